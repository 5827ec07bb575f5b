"""An image's files (the photo, its thumbnail, its heatmap) for those who may see them:
the one way the site's pages and the API (token clients) serve them."""
from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect

from .models import PetImage


def serve_image_file(user, pk: int, kind: str) -> HttpResponse:
    """An image's file (``image``, ``thumbnail`` or ``heatmap``) for its owner, and for
    reviewers, who may view every image; 404 to anyone else. The site's image URLs and
    the API's (token clients) answer with this."""
    may_view_all = user.has_perm("classifier.view_petimage")
    images = PetImage.objects.all() if may_view_all else PetImage.objects.filter(owner=user)
    field = getattr(get_object_or_404(images, pk=pk), kind)
    if not field:
        raise Http404("No such file.")
    if not _on_local_disk(field):
        # Object storage (S3): the browser fetches the private object itself, by a signed
        # URL that expires; the redirect is cached for half that time, so a page shown
        # again reuses the URL (and the browser's copy of the image).
        response = redirect(field.url)
        response["Cache-Control"] = f"private, max-age={settings.PETSITE_SIGNED_URL_SECONDS // 2}"
        return response
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        raise Http404("The file is missing from storage.") from None
    response = FileResponse(handle, filename=None)
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _on_local_disk(field) -> bool:
    """True for a file storage with paths (streamed by the site), False for object storage."""
    try:
        field.storage.path(field.name)
    except NotImplementedError:
        return False
    return True
