from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from classifier import views as classifier_views
from petsite import health

reset_offered = classifier_views.password_reset_offered

# django.contrib.auth.urls, spelled out: the login page says whether password reset is
# offered, and the reset pages answer 404 where it is not (no mail could arrive).
account_urls = [
    path("login/", classifier_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password_reset/", reset_offered(auth_views.PasswordResetView.as_view()), name="password_reset"),
    path(
        "password_reset/done/", reset_offered(auth_views.PasswordResetDoneView.as_view()), name="password_reset_done"
    ),
    path(
        "reset/<uidb64>/<token>/",
        reset_offered(classifier_views.PasswordResetConfirmView.as_view()),
        name="password_reset_confirm",
    ),
    path("reset/done/", reset_offered(auth_views.PasswordResetCompleteView.as_view()), name="password_reset_complete"),
]

# Problem details under /api/, the site's pages elsewhere; 503 during outages (petsite.errors).
handler400 = "petsite.errors.bad_request"
handler403 = "petsite.errors.permission_denied"
handler404 = "petsite.errors.page_not_found"
handler500 = "petsite.errors.server_error"

urlpatterns = [
    # Answered by health.ProbeMiddleware first; named here for reverse() and the permission table.
    *(path(name, view, name=name) for name, view in health.PROBES.items()),
    path("admin/", admin.site.urls),
    path("accounts/signup/", classifier_views.signup, name="signup"),
    path("accounts/", include(account_urls)),
    path("models/", include("registry.urls")),
    path("training/", include("training.urls")),
    path("api/", include("api.urls")),
    path("webhooks/", include("webhooks.urls")),  # the token page's webhook section posts here
    path("", include("classifier.urls")),
]
