"""Images in known states, made directly through the services (no worker needed)."""
import pytest
from django.utils import timezone

from classifier.models import PetImage
from tests.helpers import store_photo, upload


@pytest.fixture
def make_image(user, model_version):
    """make_image(breed="pug", confidence=0.9, owner=None, **fields) -> a classified PetImage."""

    def make(breed: str = "pug", confidence: float = 0.9, owner=None, **fields) -> PetImage:
        file = upload()
        pet = store_photo(owner or user, file)
        values = {
            "status": PetImage.Status.DONE, "predicted_breed": breed, "confidence": confidence,
            "top_k": [{"breed": breed, "probability": confidence}], "model_version": model_version,
            "classified_at": timezone.now(), **fields,
        }
        PetImage.objects.filter(pk=pet.pk).update(**values)
        pet.refresh_from_db()
        return pet

    return make
