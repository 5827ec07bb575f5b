"""Training runs learn from reviewed photos made as the classifier tests make them."""
from tests.classifier.conftest import make_image  # noqa: F401  (a fixture, shared)
