from django import forms

from .models import TrainingRun


class TrainingForm(forms.Form):
    """What staff choose when they start a training run from the site; the rest is the recipe's."""

    start_from = forms.ChoiceField(
        choices=TrainingRun.Start.choices, widget=forms.RadioSelect,
        help_text="The active model learns from the new reviews fastest; ImageNet weights start afresh.",
    )
    recipe = forms.ChoiceField(
        choices=[("auto", "Automatic"), ("quick", "Quick"), ("full", "Full fine-tune")],
        initial="auto",
        help_text="Automatic is quick on a CPU and full on a GPU. Quick trains the last layer on features "
                  "computed once: minutes on a CPU. Full fine-tunes every layer: best on a GPU.",
    )
    epochs = forms.IntegerField(
        min_value=1, max_value=200, required=False,
        help_text="Empty: the recipe's own. Full: epochs with every layer trained (4), each a pass over all the "
                  "images. Quick: epochs of the last layer on the cached features (40), a second or so each.",
    )
    image_size = forms.TypedChoiceField(
        choices=[(size, f"{size} px") for size in (128, 160, 192, 224)], coerce=int, initial=224,
        help_text="Smaller trains faster and is less accurate.",
    )

    def __init__(self, *args, has_active_model: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["start_from"].initial = TrainingRun.Start.ACTIVE if has_active_model else TrainingRun.Start.IMAGENET
        if not has_active_model:
            self.fields["start_from"].choices = [(TrainingRun.Start.IMAGENET, TrainingRun.Start.IMAGENET.label)]


class PromoteForm(forms.Form):
    confirm = forms.BooleanField(
        required=False, label="Promote it although it did worse than the active model",
    )
