"""Thin views: they check who asks, validate with forms and call the service functions."""
from collections.abc import Callable
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.forms import UserCreationForm
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from . import review, uploads
from .filters import GalleryFilter
from .forms import FeedbackForm, UploadForm
from .limits import limit_uploads
from .models import PetImage, label_name


class SignupForm(UserCreationForm):
    """A username, a password and, if the user wishes, an e-mail address (for password reset only)."""

    email = forms.EmailField(
        required=False, help_text="Optional. Used only to send you a link if you forget your password."
    )

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")


def password_reset_offered(view: Callable) -> Callable:
    """Answer 404 unless the site can send password-reset mails (PETSITE_PASSWORD_RESET).

    Checked on each request, not when the URLs load, so that every page agrees with the
    setting of the moment.
    """

    @wraps(view)
    def offered(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.PETSITE_PASSWORD_RESET:
            raise Http404("Password reset is not offered on this site.")
        return view(request, *args, **kwargs)

    return offered


class LoginView(auth_views.LoginView):
    """Django's login page, which offers the password-reset link only where the site can send it."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "password_reset": settings.PETSITE_PASSWORD_RESET}


def signup(request):
    form = SignupForm(request.POST) if request.method == "POST" else SignupForm()
    if form.is_bound and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("classifier:upload")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


@login_required
@limit_uploads
def upload(request):
    form = UploadForm(request.POST, request.FILES) if request.method == "POST" else UploadForm()
    if form.is_bound and form.is_valid():
        pet, created = uploads.get_or_create_pet_image(request.user, form.cleaned_data["image"], form.image_info)
        if not created:
            messages.info(request, "You uploaded this photo before; here it is.")
        return redirect(pet)
    context = {"form": form, "max_upload": settings.PETSITE_MAX_UPLOAD_BYTES}
    return render(request, "classifier/upload.html", context, status=400 if form.errors else 200)


@login_required
def gallery(request):
    images = PetImage.objects.filter(owner=request.user).select_related("model_version")
    filters = GalleryFilter(request.GET, queryset=images)
    page = Paginator(filters.qs, settings.PETSITE_GALLERY_PAGE_SIZE).get_page(request.GET.get("page"))
    filtered = any(value for key, value in request.GET.items() if key not in ("page", "sort"))
    return render(request, "classifier/gallery.html", {"page": page, "filters": filters, "filtered": filtered})


def _own_image(request, pk: int) -> PetImage:
    """The image if it is the requester's; a 404 otherwise, so ids reveal nothing."""
    return get_object_or_404(PetImage.objects.select_related("model_version"), pk=pk, owner=request.user)


@login_required
def detail(request, pk: int):
    pet = _own_image(request, pk)
    initial = {"answer": "correct" if pet.is_correct else "wrong", "label": pet.true_breed} if pet.feedback_at else {}
    form = FeedbackForm(initial=initial, pet=pet)
    return render(request, "classifier/detail.html", {"pet": pet, "feedback_form": form})


@login_required
@require_POST
def feedback(request, pk: int):
    pet = _own_image(request, pk)
    form = FeedbackForm(request.POST, pet=pet)
    if not form.is_valid():
        return render(request, "classifier/detail.html", {"pet": pet, "feedback_form": form}, status=400)
    correct = form.cleaned_data["answer"] == "correct"
    review.record_feedback(pet, correct=correct, label=form.cleaned_data.get("label", ""))
    messages.success(request, "Thanks! Your answer helps the next model." if not correct else "Thanks for confirming!")
    return redirect(pet)


@login_required
@permission_required("classifier.review_petimage", raise_exception=True)
def review_dashboard(request):
    return render(request, "classifier/review_dashboard.html", review.review_summary())


@login_required
@require_GET
def status(request, pk: int):
    pet = _own_image(request, pk)
    return JsonResponse({
        "id": pet.pk,
        "status": pet.status,
        "status_display": pet.get_status_display(),
        "finished": pet.is_finished,
        "message": pet.status_message(),
        "predicted_breed": pet.predicted_breed,
        "breed_name": label_name(pet.predicted_breed) if pet.predicted_breed else "",
        "confidence": pet.confidence,
        "top_k": pet.top_k_display(),
        "model_version": pet.model_version.name if pet.model_version else None,
        "classified_at": pet.classified_at.isoformat() if pet.classified_at else None,
        "detail_url": reverse("classifier:detail", args=[pet.pk]),
    })


@login_required
@require_GET
def image_file(request, pk: int, kind: str):
    """Serve an image through Django so that only its owner (and reviewers, who may view every image) can fetch it."""
    may_view_all = request.user.has_perm("classifier.view_petimage")
    images = PetImage.objects.all() if may_view_all else PetImage.objects.filter(owner=request.user)
    field = getattr(get_object_or_404(images, pk=pk), kind)
    if not field:
        raise Http404("No such file.")
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        raise Http404("The file is missing from storage.") from None
    response = FileResponse(handle, filename=None)
    response["Cache-Control"] = "private, max-age=3600"
    return response
