"""The ``train`` command trains on the ml tests' small fake dataset."""
from tests.ml.conftest import tiny_pets  # noqa: F401  (a fixture, shared)
