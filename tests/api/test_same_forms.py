"""The API validates through the site's forms: a rule changed in a form applies to the page
and to the API alike, and the API's request schema is derived from the same forms."""
from unittest import mock

from django import forms
from django.urls import reverse

from api.serializers import FeedbackRequestSerializer
from classifier.forms import FeedbackForm, UploadForm
from classifier.models import LABEL_CHOICES
from tests.helpers import upload


def test_a_new_feedback_rule_refuses_on_the_page_and_in_the_api(client, user, owner, make_image):
    pet = make_image("pug")
    real_clean = FeedbackForm.clean

    def no_beagles(form):
        data = real_clean(form)
        if data.get("label") == "beagle":
            form.add_error("label", "No beagles today.")
        return data

    client.force_login(user)
    with mock.patch.object(FeedbackForm, "clean", no_beagles):
        page = client.post(reverse("classifier:feedback", args=[pet.pk]), {"answer": "wrong", "label": "beagle"})
        api = owner.post(reverse("api:image-feedback", args=[pet.pk]), {"answer": "wrong", "label": "beagle"},
                         format="json")
    assert page.status_code == 400
    assert "No beagles today." in page.content.decode()
    assert api.status_code == 400
    assert [(e["pointer"], e["detail"]) for e in api.json()["errors"]] == [("#/label", "No beagles today.")]
    pet.refresh_from_db()
    assert pet.feedback_at is None  # neither saved it


def test_a_new_upload_rule_refuses_on_the_page_and_in_the_api(client, user, owner):
    def closed(form):
        raise forms.ValidationError("Uploads are closed.")

    client.force_login(user)
    with mock.patch.object(UploadForm, "clean_image", closed, create=True):
        page = client.post(reverse("classifier:upload"), {"image": upload()}, HTTP_ACCEPT="application/json")
        api = owner.post(reverse("api:image-list"), {"image": upload()}, format="multipart")
    assert page.status_code == 400
    assert page.json()["errors"] == ["Uploads are closed."]
    assert api.status_code == 400
    assert [(e["pointer"], e["detail"]) for e in api.json()["errors"]] == [("#/image", "Uploads are closed.")]


def test_the_request_schema_is_the_forms_own():
    fields = FeedbackRequestSerializer().fields
    assert list(fields["answer"].choices) == [key for key, _ in FeedbackForm.base_fields["answer"].choices]
    assert sorted(fields["label"].choices) == sorted(key for key, _ in LABEL_CHOICES)
