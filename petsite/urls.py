from django.contrib import admin
from django.urls import include, path

from classifier import views as classifier_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/signup/", classifier_views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("models/", include("ml.urls")),
    path("", include("classifier.urls")),
]
