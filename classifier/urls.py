from django.urls import path

from . import views

app_name = "classifier"
urlpatterns = [
    # The gallery for a logged-in owner; the landing page for visitors.
    path("", views.gallery, name="gallery"),
    path("upload/", views.upload, name="upload"),
    path("images/status.json", views.statuses, name="statuses"),
    path("images/<int:pk>/", views.detail, name="detail"),
    path("images/<int:pk>/feedback", views.feedback, name="feedback"),
    path("images/<int:pk>/delete", views.delete, name="delete"),
    path("review/", views.review_dashboard, name="review_dashboard"),
    path("images/<int:pk>/status.json", views.status, name="status"),
    path("images/<int:pk>/file/", views.image_file, {"kind": "image"}, name="image_file"),
    path("images/<int:pk>/thumbnail/", views.image_file, {"kind": "thumbnail"}, name="thumbnail"),
    path("images/<int:pk>/heatmap/", views.image_file, {"kind": "heatmap"}, name="heatmap"),
    path("images/<int:pk>/explain", views.explain, name="explain"),  # POST: ask for the heatmap
]
