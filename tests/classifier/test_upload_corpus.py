"""The bad-file corpus: odd and hostile inputs through the real upload view.

Each kind has its expected outcome: refused with a message in plain words (then no row
and no stored file), or accepted (then a row, the stored copy in the expected format and
a thumbnail). Never a 500, never Pillow's own words in front of the user.
"""
from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse
from PIL import Image, PngImagePlugin

from classifier.models import PetImage
from tests.helpers import encoded, image_bytes, stored_files, upload

# Words of Pillow's own error messages: none may reach the person uploading.
PILLOW_WORDS = ("cannot identify", "truncated", "broken", "decoder", "not processed", "PIL", "Pillow", "Errno")


@pytest.fixture
def logged_in(client, user, settings):
    settings.PETSITE_UPLOAD_RATE = "10000/m"
    client.force_login(user)
    return client


# --- Builders -----------------------------------------------------------------------------


def picture(size=(120, 90), mode="RGB") -> Image.Image:
    image = Image.open(io.BytesIO(image_bytes(size, fmt="PNG")))
    return image.convert(mode)


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def raw_png(width: int, height: int, depth: int, colour: int, rows: Callable[[int], bytes]) -> bytes:
    """A PNG written by hand (for what Pillow does not write: 16-bit RGB, lying headers)."""
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(b"\x00" + rows(y)) for y in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_header_lies() -> bytes:
    """IHDR says 100000x100000 (10 gigapixels); the data is a few bytes."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def decompression_bomb() -> bytes:
    """A real 6000x6000 greyscale PNG of zeros: 36 MB of pixels in a few dozen KB."""
    row = bytes(6000)
    return raw_png(6000, 6000, 8, 0, lambda y: row)


def png16_rgb() -> bytes:
    def row(y: int) -> bytes:
        return struct.pack(">HHH", 65535, 30000 + y * 100, 1000) * 40

    return raw_png(40, 30, 16, 2, row)


def png16_grey() -> bytes:
    return encoded(Image.new("I;16", (40, 30), 20000), "PNG")  # 20000/65535: a mid-dark grey, not white


def with_text_chunk(compressed: bool) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Comment", "x" * 5_000_000, zip=compressed)
    return encoded(picture(), "PNG", pnginfo=info)


def jpeg_dimensions(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its frame header saying ``width`` x ``height``."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9:]
    raise ValueError("no frame header")


def webp_dimensions(data: bytes, width: int, height: int) -> bytes:
    at = data.index(b"VP8 ") + 8 + 6  # the VP8 frame header's 14-bit width and height
    return data[:at] + struct.pack("<HH", width, height) + data[at + 4:]


def psd() -> bytes:
    width, height = 8, 6
    header = b"8BPS" + struct.pack(">H6sHIIHH", 1, bytes(6), 3, height, width, 8, 3)
    return header + struct.pack(">IIIH", 0, 0, 0, 0) + b"\x80" * (width * height * 3)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def mpo() -> bytes:
    return encoded(picture(), "MPO", save_all=True, append_images=[picture().rotate(90)])


def palette_with_transparency() -> bytes:
    image = picture().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encoded(image, "PNG", transparency=0)


def exif_jpeg(raw_exif: bytes) -> bytes:
    return encoded(picture(), "JPEG", exif=raw_exif)


def orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return encoded(picture(), "JPEG", exif=exif)


GOOD_JPEG = encoded(picture(), "JPEG", quality=90)
GOOD_PNG = encoded(picture(), "PNG")
GOOD_GIF = encoded(picture(), "GIF")
GOOD_WEBP = encoded(picture(), "WEBP", quality=80)
ZIP = b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18)


# --- The corpus ------------------------------------------------------------------------------


@dataclass
class Case:
    content: bytes | Callable[[], bytes]
    name: str = "photo.jpg"
    content_type: str = "image/jpeg"
    refused: str | None = None  # words of the message; None: the upload is accepted
    stored_as: str | None = None  # accepted: the stored copy's format
    check: Callable[[PetImage, Image.Image], None] | None = None

    def body(self) -> bytes:
        return self.content() if callable(self.content) else self.content


NOT_AN_IMAGE = "This file is not an image we can read; upload a JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF photo."
DAMAGED = "The image is damaged or incomplete, so we cannot read it. Try exporting or saving it again."


def stored_size(size):
    def check(pet, stored):
        assert stored.size == size == (pet.width, pet.height)
    return check


def first_frame_red(pet, stored):
    assert stored.convert("RGB").getpixel((5, 5))[0] > 200


def grey_not_white(pet, stored):
    assert stored.mode == "L"
    assert 70 <= stored.getpixel((3, 3)) <= 85
    thumb = Image.open(pet.thumbnail.open("rb"))
    assert 65 <= thumb.getpixel((3, 3))[0] <= 90


def nothing_appended(pet, stored):
    data = pet.image.open("rb").read()
    assert b"<script>" not in data
    assert b"PK\x05\x06" not in data
    assert b"garbage" not in data


def name_kept(expected):
    def check(pet, stored):
        assert pet.original_name == expected
    return check


CORPUS: dict[str, Case] = {
    # Not images, or not whole ones.
    "empty file": Case(b"", refused="The file is empty."),
    "plain text": Case(b"Hello, this is a letter.\n" * 50, name="letter.txt", content_type="text/plain",
                       refused=NOT_AN_IMAGE),
    "html page": Case(b"<!doctype html><html><body><script>alert(1)</script></body></html>", name="x.html",
                      content_type="text/html", refused=NOT_AN_IMAGE),
    "svg drawing": Case(b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9" height="9"/>'
                        b"</svg>", name="d.svg", content_type="image/svg+xml", refused=NOT_AN_IMAGE),
    "pdf document": Case(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", name="d.pdf",
                         content_type="application/pdf", refused=NOT_AN_IMAGE),
    "zip archive": Case(ZIP, name="photos.zip", content_type="application/zip", refused=NOT_AN_IMAGE),
    "truncated jpeg": Case(GOOD_JPEG[: len(GOOD_JPEG) // 2], refused=DAMAGED),
    "jpeg without its end": Case(GOOD_JPEG[:-2], refused=DAMAGED),
    "jpeg header only": Case(GOOD_JPEG[:200], refused=DAMAGED),
    "truncated png": Case(GOOD_PNG[: len(GOOD_PNG) // 2], name="p.png", refused=DAMAGED),
    "truncated gif": Case(GOOD_GIF[: len(GOOD_GIF) // 2], name="g.gif", refused=DAMAGED),
    "gif header only": Case(GOOD_GIF[:13], name="g.gif", refused=DAMAGED),
    "truncated webp": Case(GOOD_WEBP[: len(GOOD_WEBP) // 2], name="w.webp", refused=DAMAGED),
    # Images in formats we do not take.
    "tiff": Case(lambda: encoded(picture(), "TIFF"), name="scan.tif", refused="TIFF images are not accepted"),
    "ico": Case(lambda: encoded(picture(), "ICO"), name="favicon.ico", refused="ICO images are not accepted"),
    "psd": Case(psd, name="layers.psd", refused="PSD images are not accepted"),
    # Too many pixels, or a shape no photo has: refused from the header, nothing decoded.
    "header claims 10 gigapixels": Case(png_header_lies, name="liar.png",
                                        refused="The image has too many pixels; photos can have at most 18,000,000"),
    "decompression bomb": Case(decompression_bomb, name="bomb.png",
                               refused="The image is 6000x6000 pixels; photos can have at most 18,000,000 pixels."),
    "progressive cmyk jpeg over its budget": Case(
        lambda: jpeg_dimensions(encoded(picture(mode="CMYK"), "JPEG", progressive=True), 4000, 4000),
        refused="progressive JPEG photos in full colour resolution can have at most 12,000,000 pixels",
    ),
    "webp over its budget": Case(lambda: webp_dimensions(GOOD_WEBP, 4000, 3000), name="w.webp",
                                 refused="WebP images can have at most 9,000,000 pixels"),
    "1x10000 strip": Case(lambda: encoded(Image.new("RGB", (1, 10_000)), "PNG"), name="strip.png",
                          refused="The image is 1x10000 pixels: too long and narrow"),
    "text chunk that inflates past Pillow's limit": Case(lambda: with_text_chunk(True), name="t.png", refused=DAMAGED),
    # Odd but fine.
    "jpeg with garbage after its end": Case(GOOD_JPEG + b"garbage" * 100, stored_as="JPEG", check=nothing_appended),
    "polyglot gif and script": Case(GOOD_GIF + b"<script>alert(1)</script>", name="poly.gif", stored_as="PNG",
                                    check=nothing_appended),
    "polyglot jpeg and zip": Case(GOOD_JPEG + ZIP, stored_as="JPEG", check=nothing_appended),
    "png named .jpg": Case(GOOD_PNG, name="photo.jpg", stored_as="PNG",
                           check=lambda pet, stored: pet.image.name.endswith(".png")),
    "jpeg sent as text/html": Case(GOOD_JPEG, content_type="text/html", stored_as="JPEG"),
    "1x1 pixel": Case(lambda: encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), name="dot.png", stored_as="PNG",
                      check=stored_size((1, 1))),
    "1x20 strip, the narrowest allowed": Case(lambda: encoded(Image.new("RGB", (1, 20)), "PNG"), name="s.png",
                                              stored_as="PNG"),
    "animated gif": Case(animated_gif, name="anim.gif", stored_as="PNG", check=first_frame_red),
    "cmyk jpeg": Case(lambda: encoded(picture(mode="CMYK"), "JPEG"), stored_as="JPEG",
                      check=lambda pet, stored: stored.mode == "CMYK"),
    "progressive jpeg": Case(lambda: encoded(picture(), "JPEG", progressive=True), stored_as="JPEG"),
    "16-bit rgb png": Case(png16_rgb, name="deep.png", stored_as="PNG", check=stored_size((40, 30))),
    "16-bit grey png": Case(png16_grey, name="grey.png", stored_as="PNG", check=grey_not_white),
    "LA png": Case(lambda: encoded(picture(mode="LA"), "PNG"), name="la.png", stored_as="PNG"),
    "palette png with transparency": Case(palette_with_transparency, name="p.png", stored_as="PNG",
                                          check=lambda pet, stored: stored.mode == "P"),
    "1-bit png": Case(lambda: encoded(picture(mode="1"), "PNG"), name="bw.png", stored_as="PNG"),
    "interlaced png": Case(lambda: encoded(picture(), "PNG", interlace=1), name="i.png", stored_as="PNG"),
    "png with a 5 MB text chunk": Case(lambda: with_text_chunk(False), name="t.png", stored_as="PNG",
                                       check=lambda pet, stored: pet.image.size < 100_000),
    "mpo from a phone": Case(mpo, stored_as="JPEG", check=lambda pet, stored: getattr(stored, "n_frames", 1) == 1),
    "bmp": Case(lambda: encoded(picture(), "BMP"), name="b.bmp", stored_as="PNG"),
    "lossless rgba webp": Case(lambda: encoded(picture(mode="RGBA"), "WEBP", lossless=True), name="w.webp",
                               stored_as="WEBP"),
    "unreadable exif block": Case(lambda: exif_jpeg(b"Exif\x00\x00MM\x00*garbage-garbage"), stored_as="JPEG",
                                  check=stored_size((120, 90))),
    "exif orientation out of range": Case(lambda: orientation(9), stored_as="JPEG", check=stored_size((120, 90))),
    "very long file name": Case(GOOD_JPEG, name="a" * 1000 + ".jpg", stored_as="JPEG",
                                check=lambda pet, stored: len(pet.original_name) <= 255
                                and pet.original_name.endswith(".jpg")),
    "path in the file name": Case(GOOD_JPEG, name="../../etc/passwd.jpg", stored_as="JPEG",
                                  check=name_kept("passwd.jpg")),
}


def post(client, case: Case):
    return client.post(reverse("classifier:upload"), {"image": upload(case.name, case.body(), case.content_type)})


def assert_refused(response, message: str, files_before, settings) -> None:
    assert response.status_code == 400
    errors = response.context["form"].errors["image"]
    assert len(errors) == 1, errors
    assert message in errors[0], errors
    assert not any(word in errors[0] for word in PILLOW_WORDS), errors[0]
    assert PetImage.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == files_before


def assert_accepted(response, case: Case) -> PetImage:
    assert response.status_code == 302, response.content.decode()[:3000]
    pet = PetImage.objects.get()
    stored = Image.open(pet.image.open("rb"))
    stored.load()
    assert stored.format == case.stored_as
    thumb = Image.open(pet.thumbnail.open("rb"))
    assert thumb.format == "JPEG"
    assert max(thumb.size) <= 320
    if case.check:
        case.check(pet, stored)
    return pet


def test_the_corpus_is_broad():
    assert len(CORPUS) >= 25
    assert sum(case.refused is not None for case in CORPUS.values()) >= 15


@pytest.mark.parametrize("kind", CORPUS)
def test_corpus(logged_in, settings, kind):
    case = CORPUS[kind]
    before = stored_files(settings.MEDIA_ROOT)
    response = post(logged_in, case)
    if case.refused is not None:
        assert_refused(response, case.refused, before, settings)
    else:
        assert_accepted(response, case)


# --- File names the test client cannot send: raw multipart bodies -------------------------


def raw_multipart(client, filename: bytes, content: bytes, parameter: bytes = b"filename"):
    boundary = b"PetsiteBoundary7MA4YWxk"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; ' + parameter + b'="' + filename
        + b'"\r\nContent-Type: image/jpeg\r\n\r\n' + content + b"\r\n--" + boundary + b"--\r\n"
    )
    return client.post(
        reverse("classifier:upload"), data=body, content_type=f"multipart/form-data; boundary={boundary.decode()}"
    )


def test_non_utf8_file_name_is_kept_readable(logged_in):
    """RFC 5987's filename*, percent-encoded Latin-1 where UTF-8 is declared."""
    response = raw_multipart(logged_in, b"UTF-8''caf%E9%20%E0%20Paris.jpg", GOOD_JPEG, parameter=b"filename*")
    assert response.status_code == 302
    name = PetImage.objects.get().original_name
    assert name == "caf\ufffd \ufffd Paris.jpg"
    name.encode("utf-8")  # storable in any database


def test_raw_non_utf8_header_is_no_file(logged_in, settings):
    """Latin-1 bytes in the header itself: Django skips the part, so the form has no file.
    A form error, not a 500."""
    before = stored_files(settings.MEDIA_ROOT)
    response = raw_multipart(logged_in, "caf\u00e9.jpg".encode("latin-1"), GOOD_JPEG)
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert PetImage.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == before


def test_control_characters_leave_the_file_name(logged_in):
    response = raw_multipart(logged_in, b"rex\x01\x7f\x1b[31m.jpg", GOOD_JPEG)
    assert response.status_code == 302
    assert PetImage.objects.get().original_name.isprintable()


def test_empty_file_name_is_no_file(logged_in, settings):
    before = stored_files(settings.MEDIA_ROOT)
    response = raw_multipart(logged_in, b"", GOOD_JPEG)
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert PetImage.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == before
