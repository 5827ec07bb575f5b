"""Abuse limits: login throttling (django-axes), the upload rate limit, password reset only where mail can arrive."""
import logging
import os
import re
import subprocess
import sys
import time
from datetime import timedelta

from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from classifier.models import PetImage
from tests.conftest import BASE_DIR, database_url
from tests.faults.services import RedisServer
from tests.helpers import upload

LOGIN = reverse("login")


def _log_in(client, username: str, password: str, **extra):
    return client.post(LOGIN, {"username": username, "password": password}, **extra)


def _logged_in_as(client) -> str | None:
    """Who the client's session belongs to, as a page sees it (None: nobody)."""
    response = client.get(reverse("classifier:gallery"))  # the landing page for nobody
    return response.wsgi_request.user.username or None if response.status_code == 200 else None


# --- logins ------------------------------------------------------------------------------


def test_wrong_passwords_lock_out_that_username_from_that_address(client, user, other_user):
    statuses = [_log_in(client, "alice", f"wrong-{i}").status_code for i in range(30)]
    assert statuses[: django_settings.AXES_FAILURE_LIMIT - 1] == [200] * (django_settings.AXES_FAILURE_LIMIT - 1)
    assert statuses[-1] == 429

    response = _log_in(client, "alice", "pw-alice-123")  # the right password, too late
    assert response.status_code == 429
    assert 15 * 60 - 60 < int(response["Retry-After"]) <= 15 * 60  # counted from the fifth failure
    page = response.content.decode()
    assert "Too many failed logins" in page
    assert "15 minutes" in page
    assert "Log in" in page
    assert _logged_in_as(client) is None

    # The admin's login form is guarded the same way.
    assert client.post(reverse("admin:login"), {"username": "alice", "password": "pw-alice-123"}).status_code == 429

    # Another user from the same address, and the same user from elsewhere, log in.
    assert _log_in(client, "bob", "pw-bob-123").status_code == 302
    assert _logged_in_as(client) == "bob"
    client.logout()
    assert _log_in(client, "alice", "pw-alice-123", REMOTE_ADDR="203.0.113.9").status_code == 302


def test_after_the_cool_off_the_right_password_works(client, user, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    for i in range(settings.AXES_FAILURE_LIMIT):
        _log_in(client, "alice", f"wrong-{i}")
    assert _log_in(client, "alice", "pw-alice-123").status_code == 429
    time.sleep(1.2)
    response = _log_in(client, "alice", "pw-alice-123")
    assert response.status_code == 302
    assert response["Location"] == reverse("classifier:gallery")
    assert _logged_in_as(client) == "alice"


def test_a_success_forgets_earlier_failures(client, user):
    for i in range(django_settings.AXES_FAILURE_LIMIT - 1):
        _log_in(client, "alice", f"wrong-{i}")
    assert _log_in(client, "alice", "pw-alice-123").status_code == 302
    client.logout()
    for i in range(django_settings.AXES_FAILURE_LIMIT - 1):
        assert _log_in(client, "alice", f"wrong-again-{i}").status_code == 200
    assert _log_in(client, "alice", "pw-alice-123").status_code == 302


def _lock_out(client, username: str = "alice", **extra) -> None:
    for i in range(django_settings.AXES_FAILURE_LIMIT):
        _log_in(client, username, f"wrong-{i}", **extra)
    assert _log_in(client, username, "wrong-again", **extra).status_code == 429


def test_tries_during_a_lockout_do_not_restart_the_cool_off(client, user):
    """AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT is off: the wait counts from the
    failure that locked the account, however often someone tries meanwhile."""
    _lock_out(client)
    # Fourteen minutes later (the failures are moved back in time): one minute to go.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=14))
    response = _log_in(client, "alice", "still-wrong")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert "1 minute" in response.content.decode()
    assert AccessAttempt.objects.get().attempt_time < timezone.now() - timedelta(minutes=13)  # not restarted
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    assert _log_in(client, "alice", "pw-alice-123").status_code == 302


def test_behind_a_proxy_each_forwarded_address_is_locked_out_on_its_own(client, user, settings):
    """One proxy in front (it connects from 10.0.0.1 and appends the client's address to
    X-Forwarded-For): five failures from one client never lock the user out elsewhere."""
    settings.AXES_IPWARE_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    _lock_out(client, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy)
    assert _log_in(client, "alice", "pw-alice-123", HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 429
    # A client that writes its own header gets the proxy's entry after it: still its own address.
    spoofed = "198.51.100.20, 203.0.113.7"
    assert _log_in(client, "alice", "pw-alice-123", HTTP_X_FORWARDED_FOR=spoofed, **proxy).status_code == 429
    assert AccessAttempt.objects.get().ip_address == "203.0.113.7"

    assert _log_in(client, "alice", "pw-alice-123", HTTP_X_FORWARDED_FOR="198.51.100.20", **proxy).status_code == 302
    client.logout()
    assert _log_in(client, "alice", "pw-alice-123", HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 429


def test_a_password_reset_lifts_the_lockout(client, user, settings):
    """The lockout page offers a password reset: going through the real reset pages lets
    the user in at once, with the new password, from the address that was locked out."""
    settings.PETSITE_PASSWORD_RESET = True
    user.email = "alice@example.com"
    user.save()
    _lock_out(client)
    page = _log_in(client, "alice", "pw-alice-123").content.decode()
    assert reverse("password_reset") in page

    client.post(reverse("password_reset"), {"email": "alice@example.com"})
    link = re.search(r"https?://[^/\s]+(/\S+)", mail.outbox[-1].body).group(1)
    form = client.get(link, follow=True)
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "n3w-Secret-pw", "new_password2": "n3w-Secret-pw"})
    assert done.status_code == 302
    assert done["Location"] == reverse("password_reset_complete")
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert _log_in(client, "alice", "n3w-Secret-pw").status_code == 302
    assert _logged_in_as(client) == "alice"


# --- uploads -----------------------------------------------------------------------------


def test_uploads_beyond_the_rate_get_a_clear_429(client, user, other_user, settings):
    settings.PETSITE_UPLOAD_RATE = "3/d"  # a day: the counting window never ends during the test
    client.force_login(user)
    url = reverse("classifier:upload")
    assert [client.post(url, {"image": upload()}).status_code for _ in range(3)] == [302, 302, 302]
    assert client.get(url).status_code == 200  # looking at the form does not count

    response = client.post(url, {"image": upload()})
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 24 * 3600
    page = response.content.decode()
    assert "Too many uploads" in page
    assert "Upload a photo" in page
    assert PetImage.objects.filter(owner=user).count() == 3

    client.force_login(other_user)  # each user has an allowance of their own
    assert client.post(url, {"image": upload()}).status_code == 302


def test_uploads_go_through_uncounted_while_the_cache_is_unreachable(client, user, settings, tmp_path, caplog):
    """The rate limit counts in Redis (as deployed): with Redis stopped, uploads through the
    site and the API are stored, never a 500; the log says so once for the whole outage,
    and the limit counts again once Redis is back."""
    from api import tokens

    redis = RedisServer(tmp_path)
    redis.start()
    try:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": redis.url, "OPTIONS": {"socket_connect_timeout": 2}}}
        settings.PETSITE_UPLOAD_RATE = "4/d"
        client.force_login(user)
        url = reverse("classifier:upload")
        assert client.post(url, {"image": upload()}).status_code == 302  # counted: 1 of 4
        redis.kill()
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue_token(user).key}")
        with caplog.at_level(logging.WARNING, logger="petsite.outages"):
            statuses = [client.post(url, {"image": upload()}).status_code for _ in range(4)]
            statuses += [api.post(reverse("api:image-list"), {"image": [upload(), upload()]}, format="multipart")
                         .status_code for _ in range(2)]
        assert statuses == [302] * 4 + [202] * 2  # 9 photos: past the limit of 4, uncounted
        assert PetImage.objects.filter(owner=user).count() == 9
        lines = [r.getMessage() for r in caplog.records if r.name == "petsite.outages"]
        assert len(lines) == 1, lines
        assert "cache is unreachable" in lines[0], lines
        assert "not rate-limited" in lines[0], lines

        caplog.clear()
        redis.start()  # back, empty: the count starts again
        with caplog.at_level(logging.WARNING, logger="petsite.outages"):
            statuses = [client.post(url, {"image": upload()}).status_code for _ in range(5)]
        assert statuses == [302] * 4 + [429]
        assert any("answers again" in r.getMessage() for r in caplog.records if r.name == "petsite.outages")
    finally:
        redis.kill()


UPLOAD_IN_ANOTHER_PROCESS = """
import sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from tests.helpers import upload
client = Client()
client.force_login(get_user_model().objects.get(username=sys.argv[1]))
print(*[client.post(reverse("classifier:upload"), {"image": upload()}).status_code for _ in range(int(sys.argv[2]))])
"""


def test_the_upload_rate_counts_across_processes(client, user, transactional_db, settings, tmp_path):
    """Two web processes, one shared file cache (the embedded default): uploads in one count in the other."""
    cache_dir = tmp_path / "cache"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                                   "LOCATION": str(cache_dir)}}
    settings.PETSITE_UPLOAD_RATE = "2/d"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "petsite.settings",  # the project's settings, with the cache from CACHE_URL
        "CACHE_URL": f"filecache://{cache_dir}",
        "DATABASE_URL": database_url(django_settings.DATABASES["default"]),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PETSITE_UPLOAD_RATE": "2/d",
        "ALLOWED_HOSTS": "testserver",
        "CELERY_TASK_DEFAULT_QUEUE": f"{settings.CELERY_TASK_DEFAULT_QUEUE}-other-process",
    }
    other = subprocess.run(
        [sys.executable, "-c", UPLOAD_IN_ANOTHER_PROCESS, "alice", "2"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.split()[-2:] == ["302", "302"]
    client.force_login(user)
    assert client.post(reverse("classifier:upload"), {"image": upload()}).status_code == 429


# --- password reset and e-mail -----------------------------------------------------------


def test_signup_takes_an_optional_email(client, db):
    form = {"password1": "a-Long-pass-42", "password2": "a-Long-pass-42"}
    response = client.post(reverse("signup"), {"username": "carol", "email": "carol@example.com", **form})
    assert response.status_code == 302
    client.logout()
    assert client.post(reverse("signup"), {"username": "dave", **form}).status_code == 302
    emails = dict(get_user_model().objects.values_list("username", "email"))
    assert emails == {"carol": "carol@example.com", "dave": ""}


RESET_URLS = [
    reverse("password_reset"),
    reverse("password_reset_done"),
    reverse("password_reset_confirm", args=["MQ", "set-password"]),
    reverse("password_reset_complete"),
]


def test_without_mail_password_reset_is_not_offered(client, user, settings):
    settings.PETSITE_PASSWORD_RESET = False
    assert reverse("password_reset") not in client.get(LOGIN).content.decode()
    for url in RESET_URLS:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("password_reset"), {"email": "alice@example.com"}).status_code == 404
    assert not mail.outbox


def test_with_mail_a_user_resets_a_forgotten_password(client, user, settings):
    settings.PETSITE_PASSWORD_RESET = True
    user.email = "alice@example.com"
    user.save()
    assert reverse("password_reset") in client.get(LOGIN).content.decode()
    assert client.get(reverse("password_reset")).status_code == 200

    response = client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    assert client.get(reverse("password_reset_done")).status_code == 200
    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert "alice" in message.body
    link = re.search(r"https?://[^/\s]+(/\S+)", message.body).group(1)

    form = client.get(link, follow=True)  # Django swaps the token for a session entry, then shows the form
    assert form.status_code == 200
    assert "Choose a new password" in form.content.decode()
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "n3w-Secret-pw", "new_password2": "n3w-Secret-pw"})
    assert done.status_code == 302
    assert done["Location"] == reverse("password_reset_complete")

    assert _log_in(client, "alice", "pw-alice-123").status_code == 200  # the old password no longer works
    assert _log_in(client, "alice", "n3w-Secret-pw").status_code == 302
    assert client.get(link, follow=True).context["validlink"] is False  # a link works once
