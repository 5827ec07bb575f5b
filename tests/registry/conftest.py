"""The ``train`` command trains on the ml tests' small fake dataset."""
from tests.ml.conftest import no_cached_weights, tiny_pets  # noqa: F401  (fixtures, shared)
