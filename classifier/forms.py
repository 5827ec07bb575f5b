from django import forms
from django.contrib.auth.forms import UserCreationForm

from ml import breeds

from . import formats, review, verdicts
from .models import NOT_A_PET


class MultipleFileInput(forms.FileInput):
    """``<input type="file" multiple>``: Django hands the view every file chosen."""

    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A list of uploaded files, at least one.

    Only the request is checked here. Each file is checked on its own by
    :func:`classifier.uploads.store_uploads`, so that one bad file refuses itself and
    never the others (a form error on this field would refuse them all); the files past
    ``PETSITE_MAX_FILES_PER_UPLOAD`` are listed as not sent, by name
    (:func:`classifier.limits.store_uploads_within_rate`), never refusing the first ones.
    """

    widget = MultipleFileInput

    def clean(self, data, initial=None) -> list:
        files = [file for file in (data if isinstance(data, list | tuple) else [data]) if file]
        if not files and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return files


class UploadForm(forms.Form):
    # Not an ImageField: inspect_image() (classifier/validators.py) decodes each whole
    # image, which ImageField's header-only check does not; it also says when a file is empty.
    image = MultipleFileField(
        label="Photos of cats or dogs",
        allow_empty_file=True,
        # The formats we take (classifier/formats.py), not "image/*": the file chooser offers
        # those, and iOS converts a photo in another format to JPEG as it sends it.
        widget=MultipleFileInput(attrs={"accept": formats.accept_attribute(), "multiple": True}),
    )


def _grouped_label_choices() -> list:
    """Breeds grouped as cats and dogs, alphabetical, then "not a cat or dog"."""
    return [
        ("", "Choose the right breed…"),
        ("Cats", breeds.choices(breeds.CAT)),
        ("Dogs", breeds.choices(breeds.DOG)),
        ("Other", [(NOT_A_PET, breeds.NOT_A_PET_NAME)]),
    ]


class FeedbackForm(forms.Form):
    """The owner's answer: the model's answer is right, or it is wrong and here is the truth.

    Either way the answer is a label (``review.record_feedback``): "correct" stands for the
    model's answer (its first breed, or not a cat or dog), and its words on the page say
    which (``verdicts.VerdictDisplay.correct_choice``).
    """

    answer = forms.ChoiceField(
        choices=[("correct", "Correct"), ("wrong", "Wrong, it is a …")], widget=forms.RadioSelect
    )
    label = forms.ChoiceField(choices=_grouped_label_choices, required=False, label="The right breed")

    def __init__(self, *args, pet=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pet = pet
        if pet is not None and pet.display.verdict:  # the words of "correct" say what it agrees with
            self.fields["answer"].choices = [("correct", pet.display.correct_choice), ("wrong", "Wrong, it is a …")]

    def clean(self):
        data = super().clean()
        if data.get("answer") == "correct" and self.pet is not None and not verdicts.model_answer(self.pet):
            raise forms.ValidationError("There is no prediction to confirm yet.", code="no_prediction")
        if data.get("answer") == "wrong" and not data.get("label") and "label" not in self.errors:
            refusal = forms.ValidationError("Choose the right breed (or “Not a cat or dog”).", code="required")
            self.add_error("label", refusal)
        return data

    @property
    def label_given(self) -> str:
        """The label the owner chose: the model's answer for "correct"."""
        if self.cleaned_data["answer"] == "correct":
            return verdicts.model_answer(self.pet)
        return self.cleaned_data["label"]

    def save(self) -> None:
        """Record the valid answer for ``pet`` (the site's form and the API both save through here)."""
        review.record_feedback(self.pet, self.label_given)

class SignupForm(UserCreationForm):
    """A username, a password and, if the user wishes, an e-mail address (for password reset only)."""

    email = forms.EmailField(
        required=False, help_text="Optional. Used only to send you a link if you forget your password."
    )

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")
