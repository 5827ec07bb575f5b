from django import forms

from .validators import ImageInfo, inspect_image


class UploadForm(forms.Form):
    # A FileField, not ImageField: inspect_image() decodes the whole image, which
    # ImageField's header-only check does not.
    image = forms.FileField(
        label="Photo of a cat or dog",
        widget=forms.ClearableFileInput(attrs={"accept": "image/*"}),
    )

    def clean_image(self):
        upload = self.cleaned_data["image"]
        self.image_info: ImageInfo = inspect_image(upload)
        return upload
