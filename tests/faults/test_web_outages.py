"""Outages seen by the web tier, with real processes on a saturated CPU.

The site runs under gunicorn as deployed (``docker/gunicorn.conf.py``: 2 processes of 4
threads) while ``cpu_load`` keeps twice as many busy processes as cores; a browser-like
client (``requests``: session, CSRF token) and a token client drive it.

- The database cut behind a TCP proxy (PostgreSQL: SQLite has no server to lose): every
  page, the status JSON, the API and uploads answer 503 with Retry-After (problem+json
  under /api/), never 500; after it is back, every upload made before is there and none
  made during it was stored.
- Redis (cache and broker) stopped: uploads are answered 302/202 and stored, pages are
  served, and a real worker classifies every upload once Redis is back.
- Behind a proxy: five wrong passwords from one forwarded address lock out that address
  only.

Bounds are stated for a quiet machine and stretched by the measured slowness
(``tests.load.scaled``); what is asserted is completeness and order, not speed.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client
from django.urls import reverse

from api import tokens
from classifier.models import PetImage
from tests.conftest import WorkerProcess, worker_env
from tests.helpers import image_bytes, stored_files, wait_for
from tests.load import scaled

from .services import GunicornServer, RedisServer, TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]
Status = PetImage.Status
PROBLEM = "application/problem+json"
POSTGRESQL = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


class Visitor:
    """A person's browser on the site: cookies, the CSRF token, no redirects followed."""

    def __init__(self, base: str, **headers: str):
        self.base = base
        self.session = requests.Session()
        self.session.headers.update(headers)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.base + path, allow_redirects=False, timeout=scaled(30), **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        if "csrftoken" not in self.session.cookies:
            self.get(reverse("login"))
        data = {**(data or {}), "csrfmiddlewaretoken": self.session.cookies["csrftoken"]}
        return self.session.post(self.base + path, data=data, allow_redirects=False, timeout=scaled(30), **kwargs)

    def log_in(self, username: str, password: str) -> requests.Response:
        return self.post(reverse("login"), {"username": username, "password": password})

    def logged_in_as(self, user) -> Visitor:
        """Take a session made for ``user`` in the test's own process (the site's processes
        check passwords with the production hashers; the tests' users have cheap ones)."""
        client = Client()
        client.force_login(user)
        name = settings.SESSION_COOKIE_NAME
        self.session.cookies.set(name, client.cookies[name].value)
        return self

    def upload(self, name: str, mark: int) -> requests.Response:
        return self.post(reverse("classifier:upload"), files={"image": (name, image_bytes(mark=mark), "image/jpeg")})


class Program:
    """A program with an API token."""

    def __init__(self, base: str, key: str):
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {key}"

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=scaled(30))

    def upload(self, name: str, mark: int) -> requests.Response:
        files = {"image": (name, image_bytes(mark=mark), "image/jpeg")}
        return self.session.post(self.base + reverse("api:image-list"), files=files, timeout=scaled(30))


def site_env(**overrides: str) -> dict[str, str]:
    """What gunicorn and a worker need to serve this test's database, media and queue."""
    cache = f"filecache://{Path(settings.MEDIA_ROOT).parent / 'web-cache'}"
    return worker_env(**{"CACHE_URL": cache, **overrides})


def assert_unavailable(response: requests.Response, api: bool) -> None:
    assert response.status_code == 503, (response.request.method, response.url, response.status_code)
    assert int(response.headers["Retry-After"]) > 0
    if api:
        assert response.headers["Content-Type"] == PROBLEM
        assert response.json()["status"] == 503
    else:
        assert "Petsite is briefly unavailable" in response.text
        assert "safe" not in response.text


def _everything_answers_503(server, visitor, program, pet: int) -> tuple[list[tuple[str, int]], float]:
    """Pages, API endpoints, uploads and a log-in while the database is away, twice (the
    second round meets processes that have seen the outage already): each a 503 with
    Retry-After. Returns (path, status) of every page and endpoint, and the slowest page."""
    pages = [reverse("classifier:gallery"), reverse("classifier:upload"), reverse("classifier:detail", args=[pet]),
             reverse("classifier:statuses") + f"?ids={pet}", reverse("classifier:status", args=[pet]),
             reverse("classifier:review_dashboard"), reverse("registry:model_list"), reverse("api:token")]
    endpoints = [reverse("api:image-list"), reverse("api:image-detail", args=[pet]), reverse("api:model-list")]
    slowest = 0.0
    answers: list[tuple[str, int]] = []
    for round_ in range(2):
        for path in pages:
            started = time.monotonic()
            response = visitor.get(path)
            slowest = max(slowest, time.monotonic() - started)
            answers.append((path, response.status_code))
            assert_unavailable(response, api=False)
        for path in endpoints:
            response = program.get(path)
            answers.append((path, response.status_code))
            assert_unavailable(response, api=True)
        assert_unavailable(visitor.upload(f"during-{round_}.jpg", mark=100 + round_), api=False)
        assert_unavailable(program.upload(f"during-api-{round_}.jpg", mark=110 + round_), api=True)
        assert_unavailable(Visitor(server.url).log_in("alice", "pw-alice-123"), api=False)
    return answers, slowest


@pytest.mark.skipif(not POSTGRESQL, reason="needs a database server to lose (PostgreSQL); SQLite is a file")
def test_database_cut_under_gunicorn_answers_503_and_loses_nothing(user, cpu_load, record_property):
    db = settings.DATABASES["default"]
    port = int(db.get("PORT") or 5432)
    proxy = TcpProxy(db.get("HOST") or "127.0.0.1", port)
    env = site_env()
    env["DATABASE_URL"] = env["DATABASE_URL"].replace(f":{port}/", f":{proxy.port}/")
    key = tokens.issue_token(user).key
    server = GunicornServer(env).start(timeout=scaled(60))
    try:
        visitor, program = Visitor(server.url).logged_in_as(user), Program(server.url, key)
        before = [visitor.upload(f"before-{i}.jpg", mark=i) for i in range(3)]
        before += [program.upload(f"before-api-{i}.jpg", mark=10 + i) for i in range(3)]
        assert [r.status_code for r in before] == [302] * 3 + [202] * 3
        assert all("/images/" in r.headers["Location"] for r in before[:3]), [r.headers["Location"] for r in before]
        stored_before = set(PetImage.objects.values_list("pk", flat=True))
        files_before = stored_files(settings.MEDIA_ROOT)
        pet = min(stored_before)

        proxy.cut()
        cut_at = time.monotonic()
        answers, slowest = _everything_answers_503(server, visitor, program, pet)
        assert 500 not in {status for _, status in answers}
        assert slowest < scaled(10), f"an answer took {slowest:.1f} s during the outage"

        proxy.restore()
        restored_at = time.monotonic()
        wait_for(lambda: visitor.get(reverse("classifier:gallery")).status_code == 200, timeout=20,
                 what="the site to answer again")
        recovery = time.monotonic() - restored_at
        assert recovery < scaled(20)
        assert program.get(reverse("api:image-list")).status_code == 200
    finally:
        proxy.cut()
        server.stop()
    # Every upload made before the outage is there, with its files; none made during it was stored.
    assert set(PetImage.objects.values_list("pk", flat=True)) == stored_before
    assert not PetImage.objects.filter(original_name__startswith="during").exists()
    assert stored_files(settings.MEDIA_ROOT) == files_before
    log = "".join(server.lines)
    assert "Internal Server Error" not in log
    assert " 500 " not in log
    assert 1 <= log.count("The database is unreachable") <= 2  # once per gunicorn process, not per request
    record_property("outage_s", round(restored_at - cut_at, 1))
    record_property("answers_503", len(answers) + 6)
    record_property("slowest_503_s", round(slowest, 2))
    record_property("recovery_s", round(recovery, 1))


def test_redis_stopped_uploads_are_stored_and_classified_once_it_is_back(
    user, model_version, cpu_load, tmp_path, record_property
):
    redis = RedisServer(tmp_path)
    redis.start()
    queue = f"petsite-web-outage-{uuid.uuid4().hex[:8]}"
    common = {"CELERY_BROKER_URL": redis.url, "CELERY_TASK_DEFAULT_QUEUE": queue,
              "CACHE_URL": redis.url.rsplit("/", 1)[0] + "/1", "PETSITE_REQUEUE_INTERVAL": "2",
              "PETSITE_REQUEUE_AFTER": "3"}
    worker = WorkerProcess(worker_env(**common), args=("-n", f"w-{queue}@%h", "--beat", "--schedule",
                                                       str(tmp_path / "beat-schedule")))
    server = GunicornServer(site_env(**common))
    try:
        assert worker.ready.wait(timeout=scaled(90)), worker.log()
        server.start(timeout=scaled(60))
        visitor, program = Visitor(server.url).logged_in_as(user), Program(server.url, tokens.issue_token(user).key)
        assert visitor.upload("before.jpg", mark=1).status_code == 302
        first = PetImage.objects.get()
        wait_for(lambda: PetImage.objects.filter(pk=first.pk, status=Status.DONE).exists(), timeout=60,
                 what="the first upload to be classified")

        redis.kill()
        stopped_at = time.monotonic()
        during = [visitor.upload(f"during-{i}.jpg", mark=10 + i) for i in range(3)]
        during += [program.upload(f"during-api-{i}.jpg", mark=20 + i) for i in range(2)]
        assert [r.status_code for r in during] == [302] * 3 + [202] * 2, [r.status_code for r in during]
        # Pages that use the cache (the photo page asks for its heatmap) and the status JSON are served.
        assert visitor.get(reverse("classifier:detail", args=[first.pk])).status_code == 200
        assert visitor.get(reverse("classifier:gallery")).status_code == 200
        assert program.get(reverse("api:image-detail", args=[first.pk])).status_code == 200
        pks = list(PetImage.objects.order_by("pk").values_list("pk", flat=True))
        assert len(pks) == 6
        time.sleep(2)  # Redis stays away a little longer
        redis.start()  # empty: every message sent before is lost too
        back_at = time.monotonic()
        wait_for(lambda: PetImage.objects.filter(pk__in=pks, status=Status.DONE).count() == 6, timeout=60,
                 what="every upload to be classified once Redis is back")
        recovery = time.monotonic() - back_at
        assert recovery < scaled(60)
    finally:
        server.stop()
        worker.stop()
        redis.kill()
    log = "".join(server.lines)
    assert "Internal Server Error" not in log
    assert " 500 " not in log
    assert 1 <= log.count("uploads are not rate-limited") <= 2, log  # once per gunicorn process, not per upload
    assert all(pet.status == Status.DONE and pet.classifications.count() == 1 for pet in PetImage.objects.all())
    record_property("outage_s", round(back_at - stopped_at, 1))
    record_property("recovery_s", round(recovery, 1))


def test_lockout_behind_a_proxy_holds_for_one_forwarded_address_only(user, cpu_load):
    # A password the site's processes can check: they use the production hashers.
    user.password = PBKDF2PasswordHasher().encode("pw-alice-123", PBKDF2PasswordHasher().salt())
    user.save()
    server = GunicornServer(site_env(AXES_IPWARE_PROXY_COUNT="1")).start(timeout=scaled(60))
    try:
        def visitor(address: str) -> Visitor:
            return Visitor(server.url, **{"X-Forwarded-For": address})

        attacker = visitor("203.0.113.7")
        statuses = [attacker.log_in("alice", f"wrong-{i}").status_code for i in range(settings.AXES_FAILURE_LIMIT)]
        assert statuses[-1] == 429
        assert 200 in statuses[:-1]
        locked = attacker.log_in("alice", "pw-alice-123")
        assert locked.status_code == 429
        assert int(locked.headers["Retry-After"]) > 0
        # A client that writes the header itself still has the proxy's entry last.
        assert visitor("198.51.100.20, 203.0.113.7").log_in("alice", "pw-alice-123").status_code == 429
        # Alice, elsewhere, logs in.
        owner = visitor("198.51.100.20")
        assert owner.log_in("alice", "pw-alice-123").status_code == 302
        assert owner.get(reverse("classifier:gallery")).status_code == 200
        assert attacker.log_in("alice", "pw-alice-123").status_code == 429
    finally:
        server.stop()
    log = "".join(server.lines)
    assert "from 203.0.113.7" in log
    assert "from 198.51.100.20" in log
