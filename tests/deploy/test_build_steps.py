"""The image's build and start steps, run here as plain commands (there is no Docker
daemon): the requirements it installs, the static files and deployment checks of
docker/build-static, gunicorn with docker/gunicorn.conf.py serving the collected files
with production settings, the bucket set-up and each role's health check."""
from __future__ import annotations

import ast
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import BASE_DIR, WorkerProcess, worker_env
from tests.helpers import wait_for

from .conftest import closed_port

DOCKER = BASE_DIR / "docker"
TEST_TOOLS = {"pytest", "pytest-django", "pytest-timeout", "hypothesis", "playwright", "ruff", "moto"}


def requirement_names(lines) -> list[str]:
    return [re.split(r"[\[=]", line)[0].lower() for line in lines if re.match(r"^[A-Za-z0-9]", line)]


def test_the_image_installs_the_requirements_without_test_tools():
    listed = subprocess.run([DOCKER / "production-requirements", BASE_DIR / "requirements.txt"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    everything = requirement_names((BASE_DIR / "requirements.txt").read_text().splitlines())
    assert requirement_names(listed) == [n for n in everything if n not in TEST_TOOLS | {"torch", "torchvision"}]
    # ... and the code that runs in the image imports none of what it leaves out.
    left_out = {"pytest", "hypothesis", "playwright", "moto", "ruff", "pytest_django"}
    for path in [*BASE_DIR.glob("*/*.py"), *BASE_DIR.glob("*/*/*/*.py")]:
        if path.parts[len(BASE_DIR.parts)] in {"tests", "bench"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & left_out, path


def test_pytorch_comes_from_the_cpu_wheel_index():
    result = subprocess.run([DOCKER / "install-requirements"], cwd=BASE_DIR, env={**os.environ, "PIP": "echo pip"},
                            capture_output=True, text=True, check=True)
    torch_line, rest = result.stdout.splitlines()
    pins = re.findall(r"^(torch(?:vision)?==\S+)", (BASE_DIR / "requirements.txt").read_text(), re.MULTILINE)
    assert torch_line == f"pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu {' '.join(pins)}"
    assert rest.startswith("pip install --no-cache-dir -r ")


def test_the_dockerfile_runs_these_steps_as_a_user_without_privileges():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    lines = dockerfile.replace("\\\n", " ").splitlines()
    steps = [line.split(None, 1) for line in lines if re.match(r"^[A-Z]+ ", line)]
    runs = [args for instruction, args in steps if instruction == "RUN"]
    assert any(args.startswith('docker/install-requirements "$TORCH_INDEX_URL"') for args in runs)
    assert any(args.startswith("docker/build-static") for args in runs)
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile
    assert [args for instruction, args in steps if instruction == "USER"] == ["petsite"]
    assert steps[-1] == ["CMD", '["gunicorn", "--config", "docker/gunicorn.conf.py", "petsite.wsgi"]']
    ignored = (BASE_DIR / ".dockerignore").read_text().splitlines()
    assert {".env", "var/", ".git", "tests/"} <= set(ignored)


def free_port() -> int:
    return closed_port()


def get(url: str, **headers: str):
    request = urllib.request.Request(url, headers=headers)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def answers(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except urllib.error.URLError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_static_files_checks_and_gunicorn_with_production_settings(tmp_path, django_db_setup, django_db_blocker):
    """docker/build-static, then the web service's command on the test database with
    production variables: probes, the HTTPS redirect, secure cookies behind the proxy,
    hashed static files served by WhiteNoise, JSON log lines with the request id."""
    production = {
        "SECRET_KEY": secrets.token_urlsafe(50), "PETSITE_HTTPS": "1", "ALLOWED_HOSTS": "pets.example.com",
        "STATIC_ROOT": str(tmp_path / "static"), "PETSITE_VAR_DIR": str(tmp_path / "var"), "LOG_FORMAT": "json",
        "STATICFILES_BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage",
        "DJANGO_SETTINGS_MODULE": "petsite.settings", "PETSITE_ENV_FILE": "/dev/null",
    }
    env = {**os.environ, **production}
    built = subprocess.run([DOCKER / "build-static"], env=env, capture_output=True, text=True, timeout=180)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "System check identified no issues" in built.stdout
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())["paths"]
    hashed_css = manifest["css/site.css"]
    assert hashed_css != "css/site.css"
    assert (tmp_path / "static" / f"{hashed_css}.gz").is_file()

    port = free_port()
    env = {**worker_env(), **production, "PORT": str(port), "WEB_CONCURRENCY": "1"}
    server = subprocess.Popen(["gunicorn", "--config", str(DOCKER / "gunicorn.conf.py"), "petsite.wsgi"],
                              cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or answers(f"{base}/healthz"), timeout=90, what="gunicorn")
        assert server.poll() is None, server.stdout.read()
        check = subprocess.run([sys.executable, DOCKER / "healthcheck.py", "web"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert (check.returncode, check.stdout.strip()) == (0, "healthy"), check.stdout

        host = {"Host": "pets.example.com"}
        status, headers, _ = get(f"{base}/accounts/login/", **host)
        assert (status, headers["Location"]) == (301, "https://pets.example.com/accounts/login/")
        status, headers, page = get(f"{base}/accounts/login/", **host, **{"X-Forwarded-Proto": "https"})
        assert status == 200
        assert "Secure" in headers["Set-Cookie"]
        assert "max-age=31536000" in headers["Strict-Transport-Security"]
        request_id = headers["X-Request-ID"]
        assert f'/static/{hashed_css}"' in page.decode()
        status, headers, css = get(f"{base}/static/{hashed_css}", **host, **{"X-Forwarded-Proto": "https"})
        assert status == 200
        assert "immutable" in headers["Cache-Control"]
        assert css == (tmp_path / "static" / hashed_css).read_bytes()
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert {"petsite.request", "gunicorn.error"} <= {e["logger"] for e in events}, output
    assert any(e["request_id"] == request_id and e["path"] == "/accounts/login/" for e in events
               if e["logger"] == "petsite.request")


def test_the_bucket_is_made_once_and_private(s3_env, s3_client):
    bucket = f"petsite-init-{secrets.token_hex(4)}"
    env = {**os.environ, **s3_env, "AWS_STORAGE_BUCKET_NAME": bucket}
    script = [sys.executable, DOCKER / "ensure_bucket.py"]
    first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"bucket {bucket} created", first.stderr
    again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"bucket {bucket} exists", again.stderr
    block = s3_client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    grants = s3_client.get_bucket_acl(Bucket=bucket)["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    assert "ID" in grants[0]["Grantee"]


def healthcheck(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, DOCKER / "healthcheck.py", *args], env={**worker_env(), **env},
                          cwd=BASE_DIR, capture_output=True, text=True, timeout=120)


def test_the_web_health_check_fails_without_a_server():
    result = healthcheck("web", PORT=str(closed_port()))
    assert result.returncode == 1
    assert "Connection refused" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_worker_and_beat_health_checks(tmp_path, django_db_setup):
    """A real worker answers the ping of its health check; a real beat writes its schedule."""
    worker = WorkerProcess(worker_env(CELERY_TASK_DEFAULT_QUEUE=f"hc-{secrets.token_hex(4)}"),
                           args=("-n", "probe@%h"))
    try:
        assert worker.ready.wait(timeout=90), worker.log()
        assert (healthcheck("worker", "probe").returncode, healthcheck("worker", "nobody").returncode) == (0, 1)
    finally:
        worker.stop()

    schedule = tmp_path / "beat" / "celerybeat-schedule"
    schedule.parent.mkdir()
    assert healthcheck("beat", PETSITE_BEAT_SCHEDULE=str(schedule)).returncode == 1  # not started yet
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "petsite", "beat", "--schedule", str(schedule)],
                            cwd=BASE_DIR, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: list(schedule.parent.iterdir()), timeout=60, what="beat's schedule file")
        assert healthcheck("beat", PETSITE_BEAT_SCHEDULE=str(schedule)).returncode == 0
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    an_hour_ago = time.time() - 3600
    for path in schedule.parent.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    stale = healthcheck("beat", PETSITE_BEAT_SCHEDULE=str(schedule))
    assert stale.returncode == 1
    assert "not written for" in stale.stdout


