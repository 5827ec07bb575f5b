from django import forms

from ml import breeds

from .models import NOT_A_PET
from .validators import ImageInfo, inspect_image

ACCEPT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp")


class UploadForm(forms.Form):
    # A FileField, not ImageField: inspect_image() decodes the whole image, which
    # ImageField's header-only check does not; it also says when a file is empty.
    image = forms.FileField(
        label="Photo of a cat or dog",
        allow_empty_file=True,
        # The formats we take, not "image/*": iOS then converts HEIC photos to JPEG as it sends them.
        widget=forms.ClearableFileInput(attrs={"accept": ",".join(ACCEPT_TYPES)}),
    )

    def clean_image(self):
        upload = self.cleaned_data["image"]
        self.image_info: ImageInfo = inspect_image(upload)
        return upload


def _grouped_label_choices() -> list:
    """Breeds grouped as cats and dogs, alphabetical, then "not a cat or dog"."""
    return [
        ("", "Choose the right breed…"),
        ("Cats", breeds.choices(breeds.CAT)),
        ("Dogs", breeds.choices(breeds.DOG)),
        ("Other", [(NOT_A_PET, "Not a cat or dog")]),
    ]


class FeedbackForm(forms.Form):
    """The owner's answer: the prediction is right, or it is wrong and here is the truth."""

    answer = forms.ChoiceField(
        choices=[("correct", "Correct"), ("wrong", "Wrong, it is a …")], widget=forms.RadioSelect
    )
    label = forms.ChoiceField(choices=_grouped_label_choices, required=False)

    def __init__(self, *args, pet=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pet = pet

    def clean(self):
        data = super().clean()
        if data.get("answer") == "correct" and self.pet is not None and not self.pet.predicted_breed:
            raise forms.ValidationError("There is no prediction to confirm yet.")
        if data.get("answer") == "wrong":
            if not data.get("label"):
                self.add_error("label", "Choose the right breed (or “Not a cat or dog”).")
            elif self.pet is not None and data["label"] == self.pet.predicted_breed:
                data["answer"] = "correct"  # "wrong, it is <the predicted breed>" means correct
        return data
