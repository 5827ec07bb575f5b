"""An image's files (the photo, its thumbnail, its heatmap) for those who may see them:
the one way the site's pages and the API (token clients) serve them.

Each file answer carries validators (RFC 9110): a strong ``ETag`` made from the stored
file's name, size and modification time, and ``Last-Modified``; a request whose
``If-None-Match`` (or, without it, ``If-Modified-Since``) says the client's copy is
current is answered 304 without reading the file. Files are written once, under a new
random name each time (a heatmap made again for another model is a new file), so the
tag changes whenever the bytes do. The photo and its thumbnail never change: browsers
keep them an hour without asking; a heatmap is checked at each use. Answers are
``private`` and vary by credentials: a shared cache never keeps them, and a browser
never shows one user's photo to the next one who logs in.
"""
import hashlib
import os

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.http import http_date

from .models import PetImage

CACHE_CONTROL = {"image": "private, max-age=3600", "thumbnail": "private, max-age=3600", "heatmap": "private, no-cache"}
VARY = ("Authorization", "Cookie")


def serve_image_file(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """An image's file (``image``, ``thumbnail`` or ``heatmap``) for its owner, and for
    reviewers, who may view every image; 404 to anyone else. The site's image URLs and
    the API's (token clients) answer with this."""
    user = request.user
    may_view_all = user.has_perm("classifier.view_petimage")
    images = PetImage.objects.all() if may_view_all else PetImage.objects.filter(owner=user)
    field = getattr(get_object_or_404(images, pk=pk), kind)
    if not field:
        raise Http404("No such file.")
    if not _on_local_disk(field):
        # Object storage (S3): the browser fetches the private object itself, by a signed
        # URL that expires; the redirect is cached for half that time, so a page shown
        # again reuses the URL (and the browser's copy of the image). The object store
        # answers the conditional requests for the object itself (its own ETag).
        response = redirect(field.url)
        response["Cache-Control"] = f"private, max-age={settings.PETSITE_SIGNED_URL_SECONDS // 2}"
        return response
    try:
        stat = os.stat(field.path)
    except FileNotFoundError:
        raise Http404("The file is missing from storage.") from None
    headers = {"ETag": file_etag(field.name, stat), "Last-Modified": http_date(int(stat.st_mtime)),
               "Cache-Control": CACHE_CONTROL[kind]}
    response = get_conditional_response(request, etag=headers["ETag"], last_modified=int(stat.st_mtime))
    if response is None:
        try:
            response = FileResponse(field.open("rb"), filename=None)
        except FileNotFoundError:
            raise Http404("The file is missing from storage.") from None
    for name, value in headers.items():
        response[name] = value
    patch_vary_headers(response, VARY)
    return response


def file_etag(name: str, stat: os.stat_result) -> str:
    """A strong entity tag for a stored file: its name, size and modification time."""
    digest = hashlib.sha256(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    return f'"{digest[:32]}"'


def _on_local_disk(field) -> bool:
    """True for a file storage with paths (streamed by the site), False for object storage."""
    try:
        field.storage.path(field.name)
    except NotImplementedError:
        return False
    return True
