"""schemathesis (pinned in requirements.txt) holds the live API to its OpenAPI schema:
every check (server errors, statuses, content types, response schemas and headers,
positive and negative data, authorization, use after delete, unsupported methods) in
every phase (the schema's examples, coverage, fuzzing, and the stateful phase that
follows the schema's links), as an owner with photos in every state and as a reviewer,
both runs side by side against one live server (about 1,300 cases each, 1 min 30 s in all on
two cores). Configured in tests/api/schemathesis.toml (seed 18); the counts of each run go
to the test's report (``record_property``) and to stdout."""
import collections
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from api import tokens, waiting
from classifier.models import PetImage

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REVIEWERS = importlib.import_module("classifier.migrations.0004_reviewers_group")
CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = Path(sys.executable).with_name("st")
MIN_CASES = 1000  # generated cases in each caller's run, at least
TIME_LIMIT = 240  # seconds: both runs side by side take about 2 minutes on two busy cores
CHECKS = {
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
    "response_headers_conformance", "positive_data_acceptance", "negative_data_rejection", "missing_required_header",
    "ignored_auth", "object_level_authorization", "use_after_free", "ensure_resource_availability",
    "unsupported_method", "allow_header_conformance",
}


class Run:
    """One schemathesis run as the holder of ``token``, started at once in a process of its
    own (in ``folder``, so that nothing it keeps lands in the checkout): the owner's and
    the reviewer's runs go side by side, each with its own reports."""

    def __init__(self, base_url: str, token: str, folder: Path) -> None:
        self.folder = folder
        self.process = subprocess.Popen(
            [str(ST), "--config-file", str(CONFIG), "run", f"{base_url}{reverse('api:schema')}?format=json",
             "--url", base_url, "--header", f"Authorization: Token {token}",
             "--checks", "all", "--no-color",
             "--report", "json,ndjson", "--report-json-path", str(folder / "run.json"),
             "--report-ndjson-path", str(folder / "events.ndjson")],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def finish(self) -> tuple[str, dict, dict]:
        """Its output, its JSON report, and how many answers each check judged."""
        try:
            output, _ = self.process.communicate(timeout=TIME_LIMIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
            pytest.fail(f"schemathesis ran past {TIME_LIMIT} s:\n{output[-4000:]}")
        if not (self.folder / "run.json").exists():
            pytest.fail(f"schemathesis did not run:\n{output[-8000:]}")
        return output, json.loads((self.folder / "run.json").read_text()), checks_run(self.folder / "events.ndjson")


def checks_run(events: Path) -> dict[str, int]:
    """How many responses each check judged, from schemathesis's NDJSON events
    (``max_response_time`` left out: without a limit, which this run does not set, it judges nothing)."""
    counts = collections.Counter()
    for line in events.read_text().splitlines():
        for check in _find_checks(json.loads(line)):
            counts[check] += 1
    counts.pop("max_response_time", None)
    return dict(sorted(counts.items()))


def _find_checks(event) -> list[str]:
    """The names of the check results anywhere in one event (their shape is schemathesis's)."""
    if isinstance(event, dict):
        if "name" in event and "status" in event and event.get("status") in ("success", "failure", "skip"):
            return [event["name"]]
        return [name for value in event.values() for name in _find_checks(value)]
    if isinstance(event, list):
        return [name for value in event for name in _find_checks(value)]
    return []


@pytest.fixture
def photos(user, make_image, model_version):
    """Alice's photos in every state an API client meets."""
    make_image("pug", 0.91)
    make_image("Persian", 0.3, verdict="unsure", is_correct=False, true_breed="Bengal")
    make_image("", None, status=PetImage.Status.PENDING, predicted_breed="", top_k=[])
    make_image("", None, status=PetImage.Status.FAILED, predicted_breed="", top_k=[], error_code="unreadable")


@pytest.fixture(autouse=True)
def short_waits(monkeypatch):
    """``?wait=N`` waits a second at most here: no worker runs, so photos stay pending and
    every wait would last its N seconds (test_wait.py tests waiting itself)."""
    real = waiting.wait_until_finished
    monkeypatch.setattr(waiting, "wait_until_finished", lambda pet, seconds: real(pet, min(seconds, 1)))


@pytest.fixture
def reviewer_user(django_user_model):
    """Staff with the Reviewers group's permissions (its migration's list: a transactional
    test's flush removes the group with the rest of the data migrations' rows): views model
    versions, and every photo's files."""
    user = django_user_model.objects.create_user("rita", password="pw", is_staff=True)
    for app_label, _model, codename in REVIEWERS.PERMISSIONS:
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def assert_passed(caller: str, output: str, report: dict, checks: dict, record_property) -> None:
    summary = f"{caller}: {report['test_cases']['generated']} cases in {report['running_time']:.0f} s; checks {checks}"
    print(summary)
    record_property(f"schemathesis_{caller}", summary)
    assert report["exit_code"] == 0, output[-8000:]
    assert report["complete"]
    assert (report["failures"], report["errors"]) == ([], [])
    assert report["test_cases"]["generated"] >= MIN_CASES
    assert set(checks) == CHECKS  # every check judged answers
    assert min(checks.values()) >= MIN_CASES
    assert {phase for phase, result in report["phases"].items() if result["status"] == "success"} == {
        "examples", "coverage", "fuzzing", "stateful"}


def test_the_api_keeps_its_schema_for_an_owner_and_a_reviewer(live_server, user, reviewer_user, photos,
                                                              other_version, settings, tmp_path, record_property):
    settings.PETSITE_UPLOAD_RATE = "100000/m"  # uploads reach the view, not only the rate limit
    runs = {}
    for caller, who in [("owner", user), ("reviewer", reviewer_user)]:
        (tmp_path / caller).mkdir()
        runs[caller] = Run(live_server.url, tokens.issue_token(who).key, tmp_path / caller)
    results = {caller: run.finish() for caller, run in runs.items()}
    for caller, (output, report, checks) in results.items():
        assert_passed(caller, output, report, checks, record_property)
