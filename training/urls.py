from django.urls import path

from . import views

app_name = "training"
urlpatterns = [
    path("", views.run_list, name="run_list"),
    path("<int:pk>/", views.run_detail, name="run"),
    path("<int:pk>/status.json", views.run_status_json, name="run_status"),
    path("<int:pk>/cancel", views.run_cancel, name="run_cancel"),
    path("<int:pk>/promote", views.run_promote, name="run_promote"),
]
