"""The JSON API: thin views over the site's forms, services and permission rules.

Programs authenticate with a token (``Authorization: Token <key>``), the site's own
scripts with their session. Images are the requester's own: another user's id answers
404, as on the site. Uploads go through the same checks, storage and rate limit as the
upload form; feedback through the same form as the photo page.
"""
from collections.abc import Mapping

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from classifier import serving, tasks, uploads
from classifier.filters import ApiImageFilter
from classifier.forms import FeedbackForm, UploadForm
from classifier.limits import store_uploads_within_rate
from classifier.models import PetImage
from ml.breeds import BREED_KEYS
from petsite.problems import body_pointer, error_item, problem
from registry.models import ModelVersion

from . import tokens, waiting
from .exceptions import form_errors
from .headers import upload_headers
from .idempotency import IdempotentUploads
from .permissions import CanViewModelVersions
from .serializers import (
    FeedbackRequestSerializer,
    ImageSerializer,
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
    UploadRequestSerializer,
    UploadResultSerializer,
)
from .throttles import UploadRateThrottle

# The views declare their successes; every error status, as a problem, is api/schema.py's.


def own_images(user) -> QuerySet[PetImage]:
    """The requester's images, the only ones the API shows (the gallery's rule); none for
    an anonymous user (the schema generator asks as one)."""
    return PetImage.objects.filter(owner_id=user.pk).select_related("model_version")


@extend_schema_view(
    get=extend_schema(
        summary="Your images",
        description="Newest first, filtered and sorted as the gallery is (`min_confidence` and `max_confidence` "
        "from 0 to 1, as `confidence`), a page at a time.",
        # The filter's choices are grouped (cats, dogs), which the schema generator cannot read.
        parameters=[OpenApiParameter("breed", str, enum=BREED_KEYS, description="Breed key (the best label known)")],
    ),
)
class ImageList(IdempotentUploads, generics.ListAPIView):  # Idempotency-Key on uploads
    serializer_class = ImageSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = ApiImageFilter
    parser_classes = [MultiPartParser]
    throttle_classes = [UploadRateThrottle]

    def get_queryset(self) -> QuerySet[PetImage]:
        return own_images(self.request.user)

    def get_serializer_class(self):
        # What the browsable API's form asks for on POST: the upload's file field, not an image's fields.
        return UploadRequestSerializer if self.request.method == "POST" else ImageSerializer

    @extend_schema(
        summary="Upload photos",
        description="One or several files, each a multipart part named `image` (at most "
        "`PETSITE_MAX_FILES_PER_UPLOAD`). Each file is checked and stored on its own: 202 when at least one was "
        "stored, with each file's outcome and the first one's address in `Location` (ask it with `?wait=30`); "
        "a 400 problem when none was, with each file's reason in `errors` and the same `files`. A file past the "
        "upload rate is refused with code `rate_limited` (a 429 when all were).",
        request={"multipart/form-data": UploadRequestSerializer},
        responses={202: UploadResultSerializer},
    )
    def post(self, request: Request) -> Response:
        form = UploadForm(request.POST, request.FILES)
        if not form.is_valid():
            raise exceptions.ValidationError(form_errors(form))
        outcomes = store_uploads_within_rate(request, form.cleaned_data["image"])
        tasks.send_new_uploads(outcomes)
        result = UploadResultSerializer(
            {"files": outcomes, "summary": uploads.upload_summary(outcomes)}, context=self.get_serializer_context()
        ).data
        headers = upload_headers(request, outcomes)  # Location, Retry-After (api/headers.py)
        if any(outcome.saved for outcome in outcomes):
            return Response(result, status=status.HTTP_202_ACCEPTED, headers=headers)
        return nothing_stored(request, outcomes, result, headers)

    def throttled(self, request: Request, wait: float) -> None:
        # DRF adds "Expected available in N seconds." and the Retry-After header.
        raise exceptions.Throttled(wait, detail="You have sent as many photos as we accept for now.")


@extend_schema_view(
    get=extend_schema(summary="One of your images", description="Poll it until `finished` is true.",
                      parameters=[waiting.WAIT_PARAMETER]),  # ?wait=N (api/waiting.py)
    delete=extend_schema(summary="Delete one of your images", description="The image, its result and all its files."),
)
class ImageDetail(generics.RetrieveDestroyAPIView):
    serializer_class = ImageSerializer

    def get_queryset(self) -> QuerySet[PetImage]:
        return own_images(self.request.user)

    def retrieve(self, request: Request, *args, **kwargs) -> HttpResponse:
        answer = waiting.wait_for(request, self.get_object())  # ?wait=N: at once when finished, else up to N s
        return answer if isinstance(answer, HttpResponse) else Response(self.get_serializer(answer).data)

    def perform_destroy(self, instance: PetImage) -> None:
        uploads.delete_pet_image(instance)


def nothing_stored(request: Request, outcomes: list, result: dict, headers: dict) -> HttpResponse:
    """The problem when no file was stored: 429 when the rate refused them all, else 400;
    each file's reason in ``errors`` (``#/image/2`` is the third file), and the upload's
    own ``files`` and ``summary`` as in a 202."""
    errors = [error_item(outcome.reason, outcome.code or "invalid", pointer=body_pointer("image", index))
              for index, outcome in enumerate(outcomes)]
    detail = outcomes[0].reason if len(outcomes) == 1 else \
        f"None of the {len(outcomes)} files was stored: `errors` gives each one's reason."
    if all(outcome.code == "rate_limited" for outcome in outcomes):
        return problem(429, detail, request=request, code="rate_limited", errors=errors, headers=headers, **result)
    return problem(400, detail, request=request, code="no_photo_stored", errors=errors, headers=headers, **result)


class NoPrediction(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "There is no prediction to confirm yet: answer \"wrong\" with a label, or wait for the result."
    default_code = "no_prediction"


class ImageFeedback(APIView):
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        summary="Answer for one of your images",
        description='"correct", or "wrong" with the right `label` (a breed key, or `not_a_pet`). Answering again '
        "replaces the answer. Wrong answers lead the review queue.",
        request=FeedbackRequestSerializer,
        responses={200: ImageSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        pet = get_object_or_404(own_images(request.user), pk=pk)
        if not isinstance(request.data, Mapping):
            raise exceptions.ValidationError(
                {"non_field_errors": [exceptions.ErrorDetail("Send an object with `answer` (and `label`).", "invalid")]}
            )
        not_text = [name for name in ("answer", "label") if not isinstance(request.data.get(name, ""), str)]
        if not_text:  # a form reads null, {} or [] as left out: the API says so instead
            raise exceptions.ValidationError({name: [exceptions.ErrorDetail("Send a string.", "invalid")]
                                              for name in not_text})
        form = FeedbackForm(request.data, pet=pet)
        if not form.is_valid():
            if form.has_error("__all__", "no_prediction"):
                raise NoPrediction()
            raise exceptions.ValidationError(form_errors(form))
        form.save()
        return Response(ImageSerializer(pet, context={"request": request}).data)


class ImageFile(APIView):
    """An image's files for token clients: the stored photo, its thumbnail, its heatmap."""

    @extend_schema(
        summary="One of your image's files",
        description="The stored photo (`file`), its thumbnail or its Grad-CAM heatmap (JPEG). On S3 storage, a "
                    "redirect to a signed URL that expires (`PETSITE_SIGNED_URL_SECONDS`).",
        responses={(200, "image/jpeg"): OpenApiTypes.BINARY, 302: OpenApiResponse(description="to a signed URL")},
    )
    def get(self, request: Request, pk: int, kind: str) -> HttpResponse:
        return serving.serve_image_file(request, pk, kind)


class NoResultYet(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The image has no result to explain yet: ask again once it is finished and done."
    default_code = "no_result"


class ImageExplain(APIView):
    """Ask for an image's Grad-CAM heatmap: made only when asked (``classifier/explanations.py`` says why)."""

    @extend_schema(
        summary="Ask for the heatmap of one of your images",
        description="A worker makes the Grad-CAM heatmap of the image's result; poll the image until "
        "`files.heatmap` is set. 200 when it is there already, 202 when asked for, 409 before the image has a "
        "result. Reading an image never asks for its heatmap.",
        request=None,
        responses={200: ImageSerializer, 202: ImageSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        pet = get_object_or_404(own_images(request.user), pk=pk)
        answer = tasks.ask_for_heatmap(pet)
        if answer == status.HTTP_409_CONFLICT:
            raise NoResultYet()
        return Response(ImageSerializer(pet, context={"request": request}).data, status=answer)


@extend_schema_view(get=extend_schema(summary="Model versions", description="Newest first; one is active."))
class ModelList(generics.ListAPIView):
    permission_classes = [IsAuthenticated, CanViewModelVersions]
    serializer_class = ModelVersionSerializer
    queryset = ModelVersion.objects.all()


@extend_schema_view(get=extend_schema(summary="One model version, with its metrics"))
class ModelDetail(generics.RetrieveAPIView):
    permission_classes = [IsAuthenticated, CanViewModelVersions]
    serializer_class = ModelVersionDetailSerializer
    queryset = ModelVersion.objects.all()
    lookup_field = "name"


# --- The user's token, on a page of the site -------------------------------------------------

NEW_KEY = "api_new_token"  # the session holds a new key from the POST to the page that shows it, once


@login_required
@require_http_methods(["GET", "POST"])
def token_settings(request: HttpRequest) -> HttpResponse:
    """Create, replace or revoke the user's API token. A new key is shown once, right after."""
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            request.session[NEW_KEY] = tokens.issue_token(request.user).key
            messages.success(request, "Your new API token is ready. Copy it now: it is shown only this once.")
        elif action == "revoke" and tokens.revoke_token(request.user):
            messages.success(request, "Your API token is revoked: programs using it are refused from now on.")
        return redirect("api:token")
    token = tokens.token_of(request.user)
    new_key = request.session.pop(NEW_KEY, None)
    context = {
        "token": token,
        "new_key": new_key if token is not None and new_key == token.key else None,
        "hint": tokens.key_hint(token) if token else "",
    }
    return render(request, "api/token.html", context)
