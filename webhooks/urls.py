from django.urls import path

from . import views

app_name = "webhooks"
urlpatterns = [
    path("endpoint/", views.endpoint, name="endpoint"),  # POST only, from the token page
]
