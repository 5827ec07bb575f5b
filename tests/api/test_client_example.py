"""The Python client in docs/api.md (docs/examples/api_client.py) works against a live site:
it uploads a photo, waits for a real worker's result with ``?wait``, and answers."""
import importlib.util
import io
import threading
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


@pytest.mark.django_db(transaction=True)
def test_the_client_waits_out_a_busy_server_as_retry_after_says(live_server, user, model_version, settings):
    """While the server holds as many waits as it allows, ?wait answers 503 with Retry-After:
    the client asks again when told, and gets the image once it is finished."""
    from django.db import connection

    from tests.helpers import store_photo
    from tests.webhooks.conftest import finish

    settings.PETSITE_WAIT_MAX_WAITERS = 0  # no room at all
    pet = store_photo(user, send=False)  # finished below, by no worker
    client = load_example()
    session = client.session_for(tokens.issue_token(user).key)
    url = f"{live_server.url}/api/v1/images/{pet.pk}/"
    refused = session.get(url, params={"wait": 5})
    assert (refused.status_code, refused.headers["Retry-After"]) == (503, "1")

    def room_and_result():
        settings.PETSITE_WAIT_MAX_WAITERS = 2
        finish(pet, model_version)
        connection.close()

    threading.Timer(1.5, room_and_result).start()
    image = client.wait_for_result(session, url, patience=20)
    assert (image["id"], image["finished"]) == (pet.pk, True)
