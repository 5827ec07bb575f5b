"""compose.yaml and compose.gpu.yaml, checked where Docker cannot run (no daemon here):
their structure with PyYAML, and Debian's docker-compose 1.29 `config` (which needs no
daemon) for interpolation, the required variables and the GPU override. `.ci/run`
installs docker-compose; elsewhere those tests skip, saying why (PETSITE_REQUIRE_COMPOSE=1
turns that into a failure)."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import BASE_DIR
from tests.test_settings import run

COMPOSE = BASE_DIR / "compose.yaml"
GPU = BASE_DIR / "compose.gpu.yaml"
PETSITE_SERVICES = {"migrate", "web", "worker", "trainer", "beat"}
LONG_RUNNING = {"db", "redis", "minio", "web", "worker", "trainer", "beat"}
REQUIRED = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "pets.example.com",
    "POSTGRES_PASSWORD": "pg-" + secrets.token_hex(8),
    "MINIO_ROOT_PASSWORD": "minio-" + secrets.token_hex(8),
}


def services(path=COMPOSE) -> dict:
    return yaml.safe_load(path.read_text())["services"]


def test_the_stack_has_every_service_with_health_checks_and_restart_policies():
    stack = services()
    assert set(stack) == LONG_RUNNING | {"migrate"}
    for name in LONG_RUNNING:
        assert stack[name]["restart"] == "unless-stopped", name
        assert stack[name]["healthcheck"]["test"][0] == "CMD", name
    assert stack["migrate"]["restart"] == "no"  # one-shot: the bucket, then the database schema
    assert {stack[name]["image"] for name in PETSITE_SERVICES} == {"${PETSITE_IMAGE:-petsite:latest}"}
    assert all(stack[name]["build"] == "." for name in PETSITE_SERVICES)


def test_services_start_in_order():
    stack = services()
    assert stack["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"},
                                              "minio": {"condition": "service_healthy"}}
    for name in PETSITE_SERVICES - {"migrate"}:
        assert stack[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"},
                                             "redis": {"condition": "service_healthy"}}, name


def test_health_checks_run_the_probes_of_each_role():
    stack = services()
    assert stack["web"]["healthcheck"]["test"] == ["CMD", "python", "docker/healthcheck.py", "web"]
    assert stack["worker"]["healthcheck"]["test"][-2:] == ["worker", "celery"]
    assert stack["trainer"]["healthcheck"]["test"][-2:] == ["worker", "trainer"]
    assert "trainer@%h" in stack["trainer"]["command"]
    assert stack["beat"]["healthcheck"]["test"][-1] == "beat"
    assert stack["beat"]["environment"]["PETSITE_BEAT_SCHEDULE"] in stack["beat"]["command"]


def test_production_settings_and_s3_media_for_every_petsite_service():
    stack = services()
    for name in PETSITE_SERVICES:
        env = stack[name]["environment"]
        assert "DEBUG" not in env, name
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?"), name  # required: no default
        assert env["PETSITE_HTTPS"] == "${PETSITE_HTTPS:-1}", name
        assert env["DATABASE_URL"].startswith("postgres://petsite:${POSTGRES_PASSWORD:?"), name
        assert (env["CELERY_BROKER_URL"], env["CACHE_URL"]) == ("redis://redis:6379/0", "redis://redis:6379/1"), name
        assert (env["AWS_S3_ENDPOINT_URL"], env["AWS_S3_ADDRESSING_STYLE"]) == ("http://minio:9000", "path"), name


def test_every_variable_the_services_set_is_read_by_someone():
    """A misspelt variable would be ignored in silence: each is read by the settings, the
    docker/ scripts, gunicorn's config, or boto3 (its credentials)."""
    readers = "\n".join(p.read_text() for p in [BASE_DIR / "petsite" / "settings.py", *(BASE_DIR / "docker").iterdir()])
    boto3_reads = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    postgres_and_minio = {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    for path in (COMPOSE, GPU):
        for service in services(path).values():
            for variable in service.get("environment", {}):
                assert variable in boto3_reads | postgres_and_minio or f'"{variable}"' in readers, (path.name, variable)


def test_env_example_names_every_variable_compose_asks_for():
    asked = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text() + GPU.read_text()))
    example = set(re.findall(r"^([A-Z0-9_]+)=", (BASE_DIR / ".env.example").read_text(), re.MULTILINE))
    assert asked - example == set()


# --- docker-compose config ---------------------------------------------------------------


def compose(*args: str, **variables: str) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        if os.environ.get("PETSITE_REQUIRE_COMPOSE") == "1":
            pytest.fail("docker-compose is missing (PETSITE_REQUIRE_COMPOSE=1): apt-get install docker-compose")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; .ci/run does)")
    env = {key: value for key, value in os.environ.items() if key not in REQUIRED}
    return subprocess.run(["docker-compose", "--project-directory", str(BASE_DIR), *args], env={**env, **variables},
                          capture_output=True, text=True, timeout=120, cwd=BASE_DIR)


def config(*files, **variables) -> dict:
    result = compose(*(arg for f in files for arg in ("-f", str(f))), "config", **variables)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_refuses_to_start_without_the_required_variables():
    for missing in REQUIRED:
        result = compose("-f", str(COMPOSE), "config", **{k: v for k, v in REQUIRED.items() if k != missing})
        assert result.returncode != 0, missing
        assert f"set {missing} in .env" in result.stderr, missing


def test_the_gpu_override_gives_the_trainer_a_gpu_and_cuda_wheels():
    base = config(COMPOSE, **REQUIRED)["services"]
    gpu = config(COMPOSE, GPU, **REQUIRED)["services"]
    trainer = gpu["trainer"]
    assert trainer["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert trainer["build"]["args"]["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    assert trainer["image"] == "petsite:cuda"
    assert trainer["command"] == base["trainer"]["command"]
    assert trainer["environment"].items() >= base["trainer"]["environment"].items()  # the base settings stay
    assert {name: s for name, s in gpu.items() if name != "trainer"} == {
        name: s for name, s in base.items() if name != "trainer"}


def dockerfile_env() -> dict[str, str]:
    """The ENV of the Dockerfile (one ENV instruction, continued lines of KEY=VALUE)."""
    text = (BASE_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("ENV ")]
    return dict(pair.split("=", 1) for pair in line.split()[1:])


def test_the_web_service_runs_with_production_settings_and_a_clean_deploy_check(tmp_path):
    """The environment of the web container (image ENV + compose's, as docker-compose
    resolves it): DEBUG off, secure cookies, the proxy's header trusted, S3 media, and
    `check --deploy` without a warning."""
    web = config(COMPOSE, **REQUIRED)["services"]["web"]["environment"]
    env = {**dockerfile_env(), **{k: str(v) for k, v in web.items()}}
    for name in ("PETSITE_VAR_DIR", "DJANGO_SETTINGS_MODULE", "PETSITE_ENV_FILE"):  # run() sets these
        env.pop(name)
    names = ["DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT",
             "STORAGES", "CACHES", "CELERY_BROKER_URL"]
    code = (
        "import django, json, sys; django.setup(); from django.conf import settings; "
        "from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='WARNING'); "
        "print(json.dumps({n: getattr(settings, n) for n in sys.argv[1:]}, default=str))"
    )
    result = run(["-c", code, *names], tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr
    values = yaml.safe_load(result.stdout.splitlines()[-1])
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"]
    assert values["CSRF_COOKIE_SECURE"]
    assert values["SECURE_SSL_REDIRECT"]
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["STORAGES"]["default"]["BACKEND"] == "petsite.storage.MediaStorage"
    assert values["STORAGES"]["staticfiles"]["BACKEND"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert values["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert values["CELERY_BROKER_URL"] == "redis://redis:6379/0"


def test_the_web_process_sees_the_dataset_the_trainer_trains_on():
    """The training page checks the dataset before it queues a run: web must see the
    trainer's folder (read-only), under the same setting."""
    stack = services()
    web, trainer = stack["web"], stack["trainer"]
    assert web["environment"]["PETSITE_DATASET_DIR"] == trainer["environment"]["PETSITE_DATASET_DIR"]
    folder = trainer["environment"]["PETSITE_DATASET_DIR"]
    assert f"datasets:{folder}:ro" in web["volumes"]
    assert any(v.startswith(f"datasets:{folder}")
                                                             for v in trainer["volumes"])
