"""Thin views: they check who asks, validate with forms and call the service functions."""
from collections.abc import Callable
from functools import wraps

from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ml.breeds import BREEDS
from registry import services as registry_services

from . import explanations, formats, review, serving, tasks, uploads
from .filters import GalleryFilter, filter_fields_html, gallery_neighbours
from .forms import FeedbackForm, SignupForm, UploadForm
from .limits import limit_uploads, store_uploads_within_rate
from .models import PetImage
from .serializers import image_status


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


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's "choose a new password" page; a new password also lifts the user's login
    lock-out, from every address: the lock-out page offers the reset as the way back in."""

    def form_valid(self, form):
        response = super().form_valid(form)
        axes_reset(username=self.user.get_username())
        return response


def signup(request):
    form = SignupForm(request.POST) if request.method == "POST" else SignupForm()
    if form.is_bound and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("classifier:upload")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


@login_required
@limit_uploads
def upload(request: HttpRequest) -> HttpResponse:
    """One photo or many (``<input type="file" multiple>``; the page's script sends one per request).

    Each file is checked and stored on its own: the good ones are kept, the bad ones
    listed with their reasons. JSON for a request that prefers it (one entry per file),
    else HTML: one photo leads to its page, several to the gallery with a summary; when
    nothing was stored, the form again with the reasons (400).
    """
    form = UploadForm(request.POST, request.FILES) if request.method == "POST" else UploadForm()
    if not form.is_bound or not form.is_valid():
        if wants_json(request):
            return JsonResponse({"errors": list(form.errors.get("image", [])), "files": []}, status=400)
        return _upload_page(request, form, status=400 if form.errors else 200)

    outcomes = store_uploads_within_rate(request, form.cleaned_data["image"])
    tasks.send_new_uploads(outcomes)
    stored = [outcome for outcome in outcomes if outcome.saved]

    if wants_json(request):
        return JsonResponse(
            {"files": [_outcome_json(request, outcome) for outcome in outcomes],
             "summary": uploads.upload_summary(outcomes)},
            status=200 if stored else 400,
        )
    if not stored:
        for outcome in outcomes:
            reason = outcome.error if len(outcomes) == 1 else f"{outcome.name}: {outcome.reason}"
            form.add_error("image", reason)
        return _upload_page(request, form, status=400)
    if len(outcomes) == 1:
        if not outcomes[0].created:
            messages.info(request, "You uploaded this photo before; here it is.")
        return redirect(outcomes[0].image)
    level = messages.SUCCESS if len(stored) == len(outcomes) else messages.WARNING
    messages.add_message(request, level, uploads.upload_summary(outcomes))
    return redirect("classifier:gallery")


def _upload_page(request: HttpRequest, form: UploadForm, status: int = 200) -> HttpResponse:
    context = {"form": form, "no_model": registry_services.active_version() is None, **upload_limits()}
    return render(request, "classifier/upload.html", context, status=status)


def upload_limits() -> dict:
    """What the upload forms tell the person (and check in the page before sending)."""
    return {
        "max_upload": settings.PETSITE_MAX_UPLOAD_BYTES,
        "max_files": settings.PETSITE_MAX_FILES_PER_UPLOAD,
        "accept_types": formats.accept_attribute(),
        "accepted_formats": formats.names_in_words(),
    }


def wants_json(request: HttpRequest) -> bool:
    """True when the client prefers JSON to HTML (``Accept: application/json``); browsers
    and clients that send no Accept header get HTML."""
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


def _outcome_json(request: HttpRequest, outcome: uploads.UploadOutcome) -> dict:
    """One file's outcome for the page's script; a stored photo comes with its gallery tile
    (the gallery's own template), which the gallery puts into its grid at once."""
    if not outcome.saved:
        return {"name": outcome.name, "ok": False, "error": outcome.reason, "code": outcome.code}
    tile = render_to_string("classifier/_tile.html", {"pet": outcome.image}, request)
    return {"name": outcome.name, "ok": True, "created": outcome.created, **image_status(outcome.image), "tile": tile}


def landing(request: HttpRequest) -> HttpResponse:
    """What Petsite does, for visitors who are not logged in (the site's front page)."""
    return render(request, "classifier/landing.html", {"breed_count": len(BREEDS)})


def gallery(request: HttpRequest) -> HttpResponse:
    """The owner's photos, filtered and sorted; visitors who are not logged in get the landing page."""
    if not request.user.is_authenticated:
        return landing(request)
    images = PetImage.objects.filter(owner=request.user).select_related("model_version")
    filters = GalleryFilter(request.GET, queryset=images)
    page = Paginator(filters.qs, settings.PETSITE_GALLERY_PAGE_SIZE).get_page(request.GET.get("page"))
    filtered = any(value for key, value in request.GET.items() if key not in ("page", "sort"))
    # Photos uploaded from this page join its grid at once where they belong: at the top of
    # the first page of all photos, newest first (elsewhere the upload's cards show them).
    new_tiles = not filtered and page.number == 1 and request.GET.get("sort", "newest") in ("", "newest")
    context = {
        "page": page, "filter_fields": filter_fields_html(request.GET), "filtered": filtered, "new_tiles": new_tiles,
        "upload_form": UploadForm(auto_id="quick_%s"), **upload_limits(),
    }
    return render(request, "classifier/gallery.html", context)


def _own_image(request, pk: int) -> PetImage:
    """The image if it is the requester's; a 404 otherwise, so ids reveal nothing."""
    return get_object_or_404(PetImage.objects.select_related("model_version"), pk=pk, owner=request.user)


def _detail_page(request: HttpRequest, pet: PetImage, form: FeedbackForm, status: int = 200) -> HttpResponse:
    previous, following = gallery_neighbours(pet)
    context = {
        "pet": pet, "feedback_form": form, "previous": previous, "next": following,
        "heatmap_ready": explanations.heatmap_is_current(pet),
    }
    return render(request, "classifier/detail.html", context, status=status)


@login_required
def detail(request, pk: int):
    pet = _own_image(request, pk)
    initial = {"answer": "correct" if pet.is_correct else "wrong", "label": pet.true_breed} if pet.feedback_at else {}
    return _detail_page(request, pet, FeedbackForm(initial=initial, pet=pet))


@login_required
@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask (GET), then delete the photo and all its files (POST)."""
    pet = _own_image(request, pk)
    if request.method != "POST":
        return render(request, "classifier/delete.html", {"pet": pet})
    uploads.delete_pet_image(pet)
    messages.success(request, "The photo is deleted.")
    return redirect("classifier:gallery")


@login_required
@require_POST
def feedback(request, pk: int):
    pet = _own_image(request, pk)
    form = FeedbackForm(request.POST, pet=pet)
    if not form.is_valid():
        return _detail_page(request, pet, form, status=400)
    form.save()
    thanks = "Thanks for confirming!" if pet.is_correct else "Thanks! Your answer helps the next model."
    messages.success(request, thanks)
    return redirect(pet)


@login_required
@permission_required("classifier.review_petimage", raise_exception=True)
def review_dashboard(request):
    return render(request, "classifier/review_dashboard.html", review.review_summary())


@login_required
@require_GET
def status(request, pk: int):
    """The photo page's poll. A read: it asks for nothing (the heatmap is asked for by :func:`explain`)."""
    return JsonResponse(image_status(_own_image(request, pk)))


@login_required
@require_POST
def explain(request: HttpRequest, pk: int) -> JsonResponse:
    """Ask a worker for the photo's heatmap: the photo page's script POSTs here once it shows
    an answer without one (``tasks.ask_for_heatmap``: 200 there already, 202 asked for, 409
    nothing to explain yet), then polls :func:`status` for ``heatmap_url``."""
    pet = _own_image(request, pk)
    return JsonResponse(image_status(pet), status=tasks.ask_for_heatmap(pet))


MAX_STATUS_IDS = 100  # more than a gallery page or an upload holds; a longer list is cut, not refused


@login_required
@require_GET
def statuses(request: HttpRequest) -> JsonResponse:
    """``?ids=1,2,3``: the status of each of those images that is the requester's, in one
    query. Other users' ids, and ids that do not exist (deleted), are simply absent; words
    that are not ids are ignored. The gallery and the upload page poll this for all
    their unfinished photos at once."""
    ids = list(dict.fromkeys(int(word) for word in request.GET.get("ids", "").split(",") if _is_id(word)))
    images = PetImage.objects.filter(owner=request.user, pk__in=ids[:MAX_STATUS_IDS]).select_related("model_version")
    return JsonResponse({"images": [image_status(pet) for pet in images.order_by("-uploaded_at", "-pk")]})


def _is_id(word: str) -> bool:
    word = word.strip()
    return word.isascii() and word.isdigit() and len(word) <= 18  # fits a 64-bit key


@login_required
@require_GET
def image_file(request, pk: int, kind: str):
    return serving.serve_image_file(request, pk, kind)
