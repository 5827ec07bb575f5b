"""The Python client in docs/api.md (docs/examples/api_client.py) works against a live site:
it uploads a photo, waits for a real worker's result with ``?wait``, and answers."""
import importlib.util
import io
from pathlib import Path

import pytest
from django.conf import settings
from PIL import Image

from api import tokens

EXAMPLE = Path(settings.BASE_DIR) / "docs" / "examples" / "api_client.py"


def load_example():
    spec = importlib.util.spec_from_file_location("api_client", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "rex.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (96, 72), (180, 120, 60)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.django_db(transaction=True)
def test_the_client_uploads_waits_and_answers(live_server, worker, model_version, user, photo, capsys, monkeypatch):
    monkeypatch.setenv("PETSITE", live_server.url)
    monkeypatch.setenv("TOKEN", tokens.issue_token(user).key)
    client = load_example()

    assert client.main(["api_client.py", str(photo), "beagle"]) == 0

    printed = capsys.readouterr().out.splitlines()
    assert f"model {model_version.name}" in printed[0]
    assert printed[1] == "Thank you: you said Beagle."
    pet = user.pet_images.get()
    assert pet.status == "done"
    assert pet.true_breed == "beagle"


@pytest.mark.django_db(transaction=True)
def test_the_client_reports_a_refusal_in_the_problems_words(live_server, user, tmp_path):
    client = load_example()
    session = client.session_for(tokens.issue_token(user).key)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")

    with pytest.raises(client.PetsiteError) as refused:
        client.upload(session, live_server.url, str(text))

    assert refused.value.status == 400
    assert refused.value.problem["status"] == 400
    assert "not an image" in str(refused.value)
