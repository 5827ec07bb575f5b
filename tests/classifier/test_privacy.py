"""The stored original carries no metadata: no EXIF (GPS above all), no XMP, no comment,
nothing appended; it is upright, keeps its ICC profile and, for JPEG, its quality."""
import io

import pytest
from django.urls import reverse
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageStat, JpegImagePlugin, PngImagePlugin

from classifier.models import PetImage
from tests.helpers import encoded, upload

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>at home, 12 Oak Street</rdf:Description></x:xmpmeta>'
SECRETS = (b"Exif", b"PetCam", b"Oak Street", b"adobe:ns:meta", b"my dog at the park", b"<script>")


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def photo(size=(640, 480)) -> Image.Image:
    """A picture whose halves differ, so that a turn or a flip shows."""
    image = Image.new("RGB", size, (235, 235, 235))
    image.paste((200, 30, 30), (0, 0, size[0] // 4, size[1] // 4))  # a red block in the stored top-left corner
    image.paste((30, 60, 200), (size[0] // 2, 0, size[0], size[1]))  # the right half blue
    return image


def gps_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PetCam"
    exif[ExifTags.Base.DateTimeOriginal] = "2026:05:01 10:00:00"
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (0.0, 7.0, 39.0)
    return exif


def send(client, name: str, content: bytes, content_type: str = "image/jpeg") -> PetImage:
    response = client.post(reverse("classifier:upload"), {"image": upload(name, content, content_type)})
    assert response.status_code == 302, response.content.decode()[:2000]
    return PetImage.objects.get(pk=response.url.rstrip("/").split("/")[-1])


def served(client, pet: PetImage) -> bytes:
    response = client.get(reverse("classifier:image_file", args=[pet.pk]))
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def assert_no_metadata(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert not image.getexif(), "EXIF left in the stored file"
    assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert not {"exif", "xmp", "XML:com.adobe.xmp", "comment", "Raw profile type exif"} & set(image.info)
    for secret in SECRETS:
        assert secret not in data, f"{secret!r} left in the stored file"
    return image


def webp_chunks(data: bytes) -> list[bytes]:
    """The top-level RIFF chunk names of a WebP file, e.g. [b"VP8X", b"ICCP", b"VP8L"]."""
    names, position = [], 12
    while position + 8 <= len(data):
        size = int.from_bytes(data[position + 4:position + 8], "little")
        names.append(data[position:position + 4])
        position += 8 + size + size % 2
    return names


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0-255."""
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def test_gps_tagged_jpeg_is_stored_and_served_without_metadata(logged_in):
    source = encoded(photo(), "JPEG", quality=88, exif=gps_exif(), icc_profile=SRGB, xmp=XMP,
                     comment=b"my dog at the park")
    original = Image.open(io.BytesIO(source))
    assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the test sends what it means to

    pet = send(logged_in, "park.jpg", source)
    data = served(logged_in, pet)
    assert data == pet.image.open("rb").read()  # the image view serves the stripped copy
    stored = assert_no_metadata(data)
    assert stored.format == "JPEG"
    assert pet.image.name.endswith(".jpg")
    assert stored.info["icc_profile"] == SRGB
    # The source's tables and subsampling: re-encoding loses next to nothing.
    assert stored.quantization == original.quantization
    assert JpegImagePlugin.get_sampling(stored) == JpegImagePlugin.get_sampling(original) == 2
    assert difference(stored, original) < 1.0
    assert (pet.width, pet.height) == (640, 480)


def test_rotated_jpeg_is_stored_upright(logged_in):
    source = encoded(photo(), "JPEG", quality=90, exif=gps_exif(orientation=6))  # shown turned 90 degrees clockwise
    pet = send(logged_in, "phone.jpg", source)
    stored = assert_no_metadata(pet.image.open("rb").read())
    assert stored.size == (480, 640)
    assert (pet.width, pet.height) == (480, 640)
    red, blue = stored.getpixel((440, 40)), stored.getpixel((240, 600))  # stored top-left is now top-right
    assert red[0] > 150
    assert red[2] < 80
    assert blue[2] > 150
    assert blue[0] < 80
    upright = Image.open(io.BytesIO(source)).transpose(Image.Transpose.ROTATE_270)
    assert difference(stored, upright) < 1.5
    thumb = Image.open(pet.thumbnail.open("rb"))
    assert thumb.size == (240, 320)
    assert thumb.getpixel((220, 20))[0] > 150


def test_png_text_chunks_and_exif_are_dropped_and_orientation_applied(logged_in):
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Comment", "my dog at the park")
    exif = gps_exif(orientation=3)  # upside down
    source = encoded(photo().convert("RGBA"), "PNG", pnginfo=info, exif=exif, icc_profile=SRGB)
    assert Image.open(io.BytesIO(source)).getexif()  # PNG's eXIf chunk, as phones write it

    pet = send(logged_in, "screen.png", source, "image/png")
    stored = assert_no_metadata(pet.image.open("rb").read())
    assert stored.format == "PNG"
    assert stored.mode == "RGBA"
    assert stored.info["icc_profile"] == SRGB
    assert stored.tobytes() == photo().convert("RGBA").rotate(180).tobytes()  # lossless, and turned


def test_webp_metadata_is_dropped_and_lossless_stays_lossless(logged_in):
    source = encoded(photo(), "WEBP", lossless=True, exif=gps_exif(), xmp=XMP, icc_profile=SRGB)
    pet = send(logged_in, "web.webp", source, "image/webp")
    data = pet.image.open("rb").read()
    stored = assert_no_metadata(data)
    assert stored.format == "WEBP"
    assert webp_chunks(data) == [b"VP8X", b"ICCP", b"VP8L"]
    assert stored.info["icc_profile"] == SRGB
    assert stored.convert("RGB").tobytes() == photo().tobytes()


def test_lossy_webp_stays_lossy(logged_in):
    source = encoded(photo(), "WEBP", quality=80, exif=gps_exif())
    data = send(logged_in, "web.webp", source, "image/webp").image.open("rb").read()
    assert webp_chunks(data) == [b"VP8 "]
    assert len(data) < 3 * len(source)
    assert_no_metadata(data)


def test_data_appended_to_an_image_is_not_stored(logged_in):
    """A polyglot: a valid JPEG that is also an HTML page (or a ZIP) after its end."""
    source = encoded(photo(), "JPEG") + b"<html><script>alert(1)</script></html>" + b"PK\x05\x06" + bytes(18)
    data = send(logged_in, "poly.jpg", source).image.open("rb").read()
    assert_no_metadata(data)
    assert data.endswith(b"\xff\xd9")
    assert b"PK\x05\x06" not in data


def test_cmyk_jpeg_keeps_its_colours_and_profile(logged_in):
    cmyk = photo().convert("CMYK")
    profile = b"not checked by Pillow, kept as it is" * 4
    source = encoded(cmyk, "JPEG", quality=90, icc_profile=profile, exif=gps_exif())
    stored = assert_no_metadata(send(logged_in, "print.jpg", source).image.open("rb").read())
    assert stored.mode == "CMYK"
    assert stored.info["icc_profile"] == profile
    assert difference(stored, Image.open(io.BytesIO(source))) < 1.5
