"""Settings from the environment: each case runs in a fresh process, as a deployment would start."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import BASE_DIR

# Everything these tests set themselves: the process starts without any of it.
OURS = {
    "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CACHE_URL", "EMAIL_URL", "PETSITE_HTTPS",
    "PETSITE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "AXES_FAILURE_LIMIT",
    "AXES_COOLOFF_MINUTES", "PETSITE_UPLOAD_RATE", "SENTRY_DSN", "LOG_FORMAT", "DATABASE_URL", "CELERY_BROKER_URL",
    "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL", "AWS_S3_PUBLIC_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}


def run(args: list[str], tmp_path, **variables: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in OURS}
    env.update(DJANGO_SETTINGS_MODULE="petsite.settings", PETSITE_VAR_DIR=str(tmp_path / "var"),
               PETSITE_ENV_FILE=str(tmp_path / "no.env"), **variables)
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def settings_with(tmp_path, names: list[str], **variables: str) -> dict:
    """The values of some settings in a process started with these variables."""
    code = "import json, sys; from django.conf import settings; print(json.dumps({n: getattr(settings, n, None) "
    code += "for n in sys.argv[1:]}, default=str))"
    result = run(["-c", code, *names], tmp_path, **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "PETSITE_HTTPS": "1",
    "ALLOWED_HOSTS": "pets.example.com",
    "CACHE_URL": "redis://127.0.0.1:6379/1",
}


def test_deploy_check_is_clean_with_production_variables(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_deploy_check_notices_a_missing_https_switch(tmp_path):
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path, **{**PRODUCTION, "PETSITE_HTTPS": "0"}
    )
    assert result.returncode != 0
    assert "security.W008" in result.stderr


def test_without_debug_a_missing_secret_key_stops_start_up(tmp_path):
    result = run(["manage.py", "check"], tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr
    assert "secrets.token_urlsafe" in result.stderr  # it says how to make one


def test_a_debug_run_needs_no_secret_key_and_passes_the_checks(tmp_path):
    """bin/run's case: DEBUG=1 and nothing else, on the embedded defaults (ratelimit's cache checks included)."""
    result = run(["manage.py", "check"], tmp_path, DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


HTTPS = ["SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
         "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER"]


def test_one_switch_turns_https_on_and_each_setting_can_be_overridden(tmp_path):
    embedded = settings_with(tmp_path, HTTPS, DEBUG="1")
    assert embedded == dict.fromkeys(HTTPS, False) | {"SECURE_HSTS_SECONDS": 0, "SECURE_PROXY_SSL_HEADER": None}
    production = settings_with(tmp_path, HTTPS, **PRODUCTION)
    assert production == dict.fromkeys(HTTPS, True) | {
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600, "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]
    }
    tuned = settings_with(
        tmp_path, HTTPS, **PRODUCTION, SECURE_HSTS_SECONDS="3600", SECURE_HSTS_PRELOAD="0", PETSITE_PROXY_SSL_HEADER="0"
    )
    assert tuned == production | {"SECURE_HSTS_SECONDS": 3600, "SECURE_HSTS_PRELOAD": False,
                                  "SECURE_PROXY_SSL_HEADER": None}


def test_the_rate_limit_cache_is_shared_between_processes(tmp_path):
    """The default cache lives in files (every process of the machine sees it); CACHE_URL picks Redis."""
    default = settings_with(tmp_path, ["CACHES"], DEBUG="1")["CACHES"]["default"]
    assert default["BACKEND"] == "django.core.cache.backends.filebased.FileBasedCache"
    assert default["LOCATION"] == str(tmp_path / "var" / "cache")
    redis = settings_with(tmp_path, ["CACHES"], **PRODUCTION)["CACHES"]["default"]
    assert redis["BACKEND"] == "django.core.cache.backends.redis.RedisCache"


@pytest.mark.parametrize(
    ("variables", "backend", "offered"),
    [
        ({"EMAIL_URL": "smtp+tls://mailer:pw@mail.example.com:587"}, "django.core.mail.backends.smtp.EmailBackend",
         True),
        ({"DEBUG": "1"}, "django.core.mail.backends.console.EmailBackend", True),
        ({}, "django.core.mail.backends.smtp.EmailBackend", False),  # nothing could send it: not offered
    ],
)
def test_password_reset_is_offered_only_where_mail_goes_out(tmp_path, variables, backend, offered):
    values = settings_with(
        tmp_path, ["EMAIL_BACKEND", "EMAIL_HOST", "PETSITE_PASSWORD_RESET"], SECRET_KEY="k" * 50, **variables
    )
    assert (values["EMAIL_BACKEND"], values["PETSITE_PASSWORD_RESET"]) == (backend, offered)
    if "EMAIL_URL" in variables:
        assert values["EMAIL_HOST"] == "mail.example.com"


def test_abuse_limits_have_safe_defaults_and_come_from_the_environment(tmp_path):
    names = ["AXES_FAILURE_LIMIT", "AXES_COOLOFF_TIME", "PETSITE_UPLOAD_RATE"]
    assert settings_with(tmp_path, names, DEBUG="1") == {
        "AXES_FAILURE_LIMIT": 5, "AXES_COOLOFF_TIME": "0:15:00", "PETSITE_UPLOAD_RATE": "30/m"
    }
    assert settings_with(
        tmp_path, names, DEBUG="1", AXES_FAILURE_LIMIT="3", AXES_COOLOFF_MINUTES="60", PETSITE_UPLOAD_RATE="100/h"
    ) == {"AXES_FAILURE_LIMIT": 3, "AXES_COOLOFF_TIME": "1:00:00", "PETSITE_UPLOAD_RATE": "100/h"}
