from django.urls import path

from . import views

app_name = "registry"
urlpatterns = [
    path("", views.model_list, name="model_list"),
    path("<slug:name>/", views.model_detail, name="model_detail"),
    path("<slug:name>/activate", views.model_activate, name="model_activate"),
    path("<slug:name>/figures/<slug:figure>.png", views.model_figure, name="model_figure"),
]
