"""Who may see what: owners their own images, other users nothing (404), anonymous users the login page."""
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from classifier.models import PetImage
from tests.helpers import upload


@pytest.fixture
def alice_image(client, user):
    client.force_login(user)
    client.post(reverse("classifier:upload"), {"image": upload()})
    client.logout()
    return PetImage.objects.get()


IMAGE_VIEWS = ["classifier:detail", "classifier:status", "classifier:image_file", "classifier:thumbnail"]


@pytest.mark.parametrize("view", IMAGE_VIEWS)
def test_owner_sees_own_image(client, user, alice_image, view):
    client.force_login(user)
    assert client.get(reverse(view, args=[alice_image.pk])).status_code == 200


@pytest.mark.parametrize("view", IMAGE_VIEWS)
def test_other_user_gets_404(client, other_user, alice_image, view):
    client.force_login(other_user)
    assert client.get(reverse(view, args=[alice_image.pk])).status_code == 404


def test_other_users_gallery_does_not_list_it(client, other_user, alice_image):
    client.force_login(other_user)
    page = client.get(reverse("classifier:gallery")).content.decode()
    assert reverse("classifier:detail", args=[alice_image.pk]) not in page
    assert "No photos yet" in page


def test_anonymous_is_sent_to_login(client, db):
    response = client.get(reverse("classifier:upload"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("view", IMAGE_VIEWS)
def test_anonymous_is_sent_to_login_for_images(client, alice_image, view):
    response = client.get(reverse(view, args=[alice_image.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_signup_logs_in_and_leads_to_upload(client, db):
    response = client.post(
        reverse("signup"), {"username": "carol", "password1": "a-Long-pass-42", "password2": "a-Long-pass-42"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("classifier:upload")
    assert client.get(reverse("classifier:gallery")).status_code == 200


def test_gallery_is_paginated_newest_first(client, user, settings):
    settings.PETSITE_GALLERY_PAGE_SIZE = 2
    client.force_login(user)
    for name in ["a.jpg", "b.jpg", "c.jpg"]:
        client.post(reverse("classifier:upload"), {"image": upload(name)})
    first = client.get(reverse("classifier:gallery")).context["page"]
    assert [p.original_name for p in first] == ["c.jpg", "b.jpg"]
    assert first.has_next()
    second = client.get(reverse("classifier:gallery") + "?page=2").context["page"]
    assert [p.original_name for p in second] == ["a.jpg"]


@pytest.mark.parametrize("url", ["admin:classifier_petimage_changelist", "admin:registry_modelversion_changelist"])
def test_admin_lists_images_and_models_for_staff_only(client, user, alice_image, model_version, url):
    client.force_login(user)
    assert client.get(reverse(url)).status_code == 302  # not staff: sent to the admin login
    user.is_staff = user.is_superuser = True
    user.save()
    response = client.get(reverse(url))
    assert response.status_code == 200
    assert (alice_image.original_name if "petimage" in url else model_version.name) in response.content.decode()


@pytest.mark.parametrize("kind", ["file", "thumbnail", "heatmap"])
def test_file_addresses_of_before_the_trailing_slash_redirect_to_it(client, user, alice_image, kind):
    """Pages and bookmarks from before the files' URLs ended in a slash still find them."""
    client.force_login(user)
    response = client.get(f"/images/{alice_image.pk}/{kind}")
    assert response.status_code == 301
    assert response["Location"] == f"/images/{alice_image.pk}/{kind}/"


@pytest.mark.parametrize("view", ["classifier:image_file", "classifier:thumbnail"])
def test_reviewers_may_fetch_any_photo_staff_alone_may_not(client, other_user, alice_image, view):
    url = reverse(view, args=[alice_image.pk])
    other_user.is_staff = True
    other_user.save()
    client.force_login(other_user)
    assert client.get(url).status_code == 404  # staff status alone grants nothing
    other_user.groups.add(Group.objects.get(name="Reviewers"))  # the group from the migration
    assert client.get(url).status_code == 200
    assert client.get(reverse("classifier:detail", args=[alice_image.pk])).status_code == 404
