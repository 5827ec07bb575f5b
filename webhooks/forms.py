from django import forms

from .addresses import UnsafeURL, check_url
from .models import Endpoint


class EndpointForm(forms.ModelForm):
    """The URL a user's webhooks go to: HTTPS, on a public address (``addresses.check_url``)."""

    url = forms.URLField(label="Endpoint URL", max_length=500, assume_scheme="https", help_text="An https:// address "
                         "on the internet that accepts a POST when each of your photos is finished.",
                         widget=forms.URLInput(attrs={"placeholder": "https://example.com/petsite-webhook"}))

    class Meta:
        model = Endpoint
        fields = ["url"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            check_url(url)
        except UnsafeURL as unsafe:
            raise forms.ValidationError(str(unsafe), code=unsafe.code) from None
        return url
