"""The image formats an upload may be: one table, and everything else derived from it.

The validator's check and its messages, the form's ``accept`` list, the page's own check
before sending and its hint, the API's schema and the stored format of each upload all
read :data:`ACCEPTED`, so adding or dropping a format is one line here.

Phone photos, HEIC/HEIF (iPhones' default, many Android phones) and AVIF, are decoded
through Pillow plugins: pillow-heif (libheif with libde265) for HEIC/HEIF, Pillow's own
AVIF plugin (libavif with dav1d) for AVIF. AVIF is offered only where Pillow was built
with it (``PIL.features.check("avif")``): pillow-heif's wheels decode no AVIF, so there
is no second way to read it, and the pages and messages then leave it out rather than
promise it.

Both are stored converted to JPEG, not as they came: browsers other than Safari cannot
show HEIC (the photo page, the gallery and an API client's download would show a broken
image), JPEG is what every browser, viewer and tool reads, and the worker and any later
export read the stored file with nothing but Pillow's built-in decoders. The stored copy
is re-encoded anyway (that is how EXIF and GPS data are stripped, for every format), so
keeping the HEIC or AVIF bytes was never on offer; re-encoding them as HEIC or AVIF would
take seconds of encoder time per photo and still not display. See
``classifier/uploads.py`` for the JPEG settings.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, features

# ISO base media files (HEIF, AVIF) begin with an "ftyp" box: its size, "ftyp", then the major brand.
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1")
AVIF_BRANDS = (b"avif", b"avis")


@dataclass(frozen=True)
class Format:
    """One format an upload may be."""

    name: str  # as people know it, in messages and hints: "JPEG", "HEIC"
    pillow: tuple[str, ...]  # Pillow's names of it (``Image.format``): "JPEG" and "MPO" are both JPEG
    mime_types: tuple[str, ...]  # what browsers call it (a file's ``type``, the ``accept`` attribute)
    extensions: tuple[str, ...]  # lower case, with the dot; the first is the format's own
    stored_as: str  # the Pillow format of the stored copy: "JPEG", "PNG" or "WEBP"
    # How a file of this format begins: alternatives, each a tuple of (offset, bytes) that
    # must all match. A file that begins so and cannot be read is damaged, not foreign.
    signatures: tuple[tuple[tuple[int, bytes], ...], ...] = ()


def _ftyp(brands: tuple[bytes, ...]) -> tuple[tuple[tuple[int, bytes], ...], ...]:
    return tuple(((4, b"ftyp"), (8, brand)) for brand in brands)


JPEG = Format("JPEG", ("JPEG", "MPO"), ("image/jpeg",), (".jpg", ".jpeg", ".jfif"), "JPEG", (((0, b"\xff\xd8\xff"),),))
PNG = Format("PNG", ("PNG",), ("image/png",), (".png",), "PNG", (((0, b"\x89PNG\r\n\x1a\n"),),))
WEBP = Format("WebP", ("WEBP",), ("image/webp",), (".webp",), "WEBP", (((0, b"RIFF"), (8, b"WEBP")),))
GIF = Format("GIF", ("GIF",), ("image/gif",), (".gif",), "PNG", (((0, b"GIF87a"),), ((0, b"GIF89a"),)))
BMP = Format("BMP", ("BMP",), ("image/bmp",), (".bmp",), "PNG")  # "BM" is too weak a sign of one
HEIC = Format(
    "HEIC", ("HEIF",), ("image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence"),
    (".heic", ".heif", ".hif"), "JPEG", _ftyp(HEIF_BRANDS),
)
AVIF = Format("AVIF", ("AVIF",), ("image/avif",), (".avif",), "JPEG", _ftyp(AVIF_BRANDS))


def _register_phone_formats() -> tuple[Format, ...]:
    """Register the HEIF opener, after Pillow's own plugins, so that Pillow's AVIF plugin
    sees a "mif1" file first (both claim that brand; each passes on what is not its own).
    Embedded thumbnails, depth maps and auxiliary images are not read: only the picture."""
    from pillow_heif import register_heif_opener

    Image.init()
    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    return (HEIC, AVIF) if features.check("avif") else (HEIC,)


ACCEPTED: tuple[Format, ...] = (JPEG, PNG, WEBP, GIF, BMP, *_register_phone_formats())
BY_PILLOW_NAME: dict[str, Format] = {pillow: fmt for fmt in ACCEPTED for pillow in fmt.pillow}


def accepted(pillow_format: str | None) -> Format | None:
    """The accepted format of an image Pillow opened as ``pillow_format``; None when it is not accepted."""
    return BY_PILLOW_NAME.get(pillow_format or "")


def stored_extension(stored_as: str) -> str:
    """The file extension of a stored copy in Pillow format ``stored_as``: ".jpg", ".png", ".webp"."""
    return BY_PILLOW_NAME[stored_as].extensions[0]


def names_in_words() -> str:
    """"JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF": for messages and hints."""
    names = [fmt.name for fmt in ACCEPTED]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def converted_to_jpeg_in_words() -> str:
    """"HEIC and AVIF": the formats stored as JPEG though they are not (the API's schema says so)."""
    names = [fmt.name for fmt in ACCEPTED if fmt.stored_as == "JPEG" and fmt is not JPEG]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def how_to_upload() -> str:
    """The end of every message that refuses a file for its kind: "upload a JPEG, … or AVIF photo"."""
    return f"upload a {names_in_words()} photo"


def mime_types() -> tuple[str, ...]:
    return tuple(mime for fmt in ACCEPTED for mime in fmt.mime_types)


def extensions() -> tuple[str, ...]:
    return tuple(extension for fmt in ACCEPTED for extension in fmt.extensions)


def accept_attribute() -> str:
    """The file input's ``accept``: the MIME types and the extensions (a system that has
    no MIME type for HEIC still offers .heic files)."""
    return ",".join(mime_types() + extensions())


def starts_like_an_accepted_image(head: bytes) -> bool:
    """Whether ``head`` (a file's first 12 bytes) begins as a file of an accepted format does."""
    return any(
        all(head[offset:offset + len(magic)] == magic for offset, magic in signature)
        for fmt in ACCEPTED for signature in fmt.signatures
    )
