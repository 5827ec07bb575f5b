"""Every page the project renders, checked in a real browser at desktop and phone width.

Each page in PAGES (named by its URL name, as the visitor, owner or staff member who sees
it) is opened at 1280 and 390 px in Debian's Chromium and must have:

- no serious or critical axe-core violation;
- nothing wider than the viewport at 390 px (``document.documentElement.scrollWidth``);
- no error in the browser's console (a missing file, a refused script, a JavaScript error).

Every page is visited before the test fails, and the failure lists each problem as
``page (URL) at WIDTH px: violation id, impact, targets``. The data is made directly
(no worker): photos in each state, a trained model with figures and tables, an imported
one without, a failed training run. Screenshots land in var/test-artifacts/browser/.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from classifier.models import Classification, PetImage
from ml.breeds import BREED_KEYS, display_name
from registry.models import ModelVersion
from tests.helpers import image_bytes, store_photo, upload
from training.models import TrainingRun

from .conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AXE_URL = "/__test__/axe.min.js"  # answered by the browser itself, from the origin under test
WIDTHS = [1280, 390]
PHONE = 390


@dataclass(frozen=True)
class Visit:
    """One page: its URL name, who looks at it, and the URL's arguments (from the data)."""

    label: str
    url_name: str | None  # None: ``path`` (an address that no URL name has)
    role: str | None  # None: a visitor; else a key of the people fixture
    kwargs: Callable[[dict], dict] = field(default=lambda data: {})
    status: int = 200
    path: str = ""
    query: str = ""

    def url(self, data: dict) -> str:
        url = reverse(self.url_name, kwargs=self.kwargs(data)) if self.url_name else self.path
        return f"{url}?{self.query}" if self.query else url


PAGES: list[Visit] = [
    Visit("landing", "classifier:gallery", None),
    Visit("login", "login", None),
    Visit("signup", "signup", None),
    Visit("API docs", "api:docs", None),
    Visit("gallery", "classifier:gallery", "owner"),
    Visit("upload", "classifier:upload", "owner"),
    Visit("photo page", "classifier:detail", "owner", lambda data: {"pk": data["photo"].pk}),
    Visit("photo waiting", "classifier:detail", "owner", lambda data: {"pk": data["waiting"].pk}),
    Visit("photo with feedback", "classifier:detail", "owner", lambda data: {"pk": data["answered"].pk}),
    Visit("delete confirmation", "classifier:delete", "owner", lambda data: {"pk": data["photo"].pk}),
    Visit("API token", "api:token", "owner"),
    Visit("password change", "password_change", "owner"),
    Visit("photo of another owner (404)", "classifier:detail", "staff", lambda data: {"pk": data["photo"].pk},
          status=404),
    Visit("review dashboard", "classifier:review_dashboard", "staff"),
    Visit("models", "registry:model_list", "staff"),
    Visit("trained model", "registry:model_detail", "staff", lambda data: {"name": data["trained"].name}),
    Visit("imported model", "registry:model_detail", "staff", lambda data: {"name": data["imported"].name}),
    Visit("training", "training:run_list", "staff"),
    Visit("training run", "training:run", "staff", lambda data: {"pk": data["run"].pk}),
    Visit("admin review queue", "admin:classifier_petimage_changelist", "staff"),
    Visit("admin review queue, searched", "admin:classifier_petimage_changelist", "staff", query="q=olive"),
    Visit("admin photo", "admin:classifier_petimage_change", "staff",
          lambda data: {"object_id": data["photo"].pk}),
    Visit("404", None, None, status=404, path="/no-such-page/"),
]


@pytest.fixture
def people(django_user_model) -> dict:
    # A superuser: a transactional test's flush removes the Reviewers group the migration made.
    staff = django_user_model.objects.create_superuser("stella", "stella@example.com", "pw")
    return {"owner": django_user_model.objects.create_user("olive", password="pw"), "staff": staff}


def _metrics(split: str = "test") -> dict:
    """A trained model's report as ``train`` writes it: every table of the model page full."""
    per_class = [
        {"breed": key, "name": display_name(key), "precision": 0.9 - i / 100, "recall": 0.8 - i / 200,
         "f1": 0.85 - i / 150, "support": 50}
        for i, key in enumerate(BREED_KEYS)
    ]
    return {
        "split": split, "num_images": 3669, "accuracy": 0.9012, "error_rate": 0.0988, "top5_accuracy": 0.9911,
        "per_class": per_class,
        "most_confused": [{"actual": "american_pit_bull_terrier", "predicted": "staffordshire_bull_terrier",
                           "count": 17}, {"actual": "Egyptian_Mau", "predicted": "Bengal", "count": 9}],
        "verdicts": {"confident": 3300, "unsure": 300, "not_a_pet": 69},
        "calibration": {"probability_threshold": 0.5, "ood_score": "mahalanobis", "ood_threshold": 41.3,
                        "keep": 0.95, "num_images": 736,
                        "accuracy_by_verdict": {"confident": 0.95, "unsure": 0.52, "not_a_pet": 0.3}},
    }


def _history() -> dict:
    return {"epochs": [
        {"epoch": n, "stage": "frozen" if n == 1 else "unfrozen", "train_loss": 1.2 / n, "valid_loss": 1.1 / n,
         "accuracy": 0.7 + n / 50, "error_rate": 0.3 - n / 50, "time": 612.4}
        for n in range(1, 6)
    ]}


@pytest.fixture
def data(people) -> dict:
    """Photos in each state, a trained and an imported model, a failed training run."""
    png = image_bytes(size=(640, 480), fmt="PNG")
    figures = {key: default_storage.save(f"models/a11y-trained/figures/{key}.png", ContentFile(png))
               for key in ("loss", "accuracy", "confusion_matrix")}
    trained = ModelVersion.objects.create(
        name="resnet34-20261203-163700", file=ContentFile(b"never read by a page", name="trained.pt"),
        classes=BREED_KEYS, metrics=_metrics(), history=_history(), figures=figures, is_active=True,
        training_args={"recipe": "full", "epochs": 4, "freeze_epochs": 1, "image_size": 224, "batch_size": 64},
    )
    imported = ModelVersion.objects.create(
        name="imported-checkpoint", file=ContentFile(b"never read by a page", name="imported.pt"),
        classes=BREED_KEYS,
    )
    owner = people["owner"]

    def photo(breed: str, confidence: float | None, verdict: str = "confident", **fields) -> PetImage:
        file = upload()
        pet = store_photo(owner, file)
        if confidence is not None:
            others = [key for key in BREED_KEYS if key != breed][:4]
            top_k = [{"breed": breed, "probability": confidence}]
            top_k += [{"breed": key, "probability": (1 - confidence) / 5} for key in others]
            PetImage.objects.filter(pk=pet.pk).update(
                status=PetImage.Status.DONE, predicted_breed=breed, confidence=confidence, top_k=top_k,
                verdict=verdict, model_version=trained, classified_at=timezone.now(), **fields)
        pet.refresh_from_db()
        return pet

    answered = photo("Persian", 0.62, verdict="unsure", is_correct=False, true_breed="Ragdoll",
                     feedback_at=timezone.now())
    for predicted, label in [("beagle", "beagle"), ("beagle", "english_cocker_spaniel")]:  # the review tables
        reviewed = photo(predicted, 0.8, reviewed_label=label, reviewed_by=people["staff"], reviewed_at=timezone.now())
        Classification.objects.create(image=reviewed, model_version=trained, predicted_breed=predicted,
                                      confidence=0.8)
    run = TrainingRun.objects.create(
        state=TrainingRun.State.FAILED, is_current=False, requested_by=people["staff"], base_version=trained,
        message="The run stopped: the dataset is not in the dataset folder.",
    )
    return {
        "photo": photo("great_pyrenees", 0.91), "waiting": photo("pug", None), "answered": answered,
        "trained": trained, "imported": imported, "run": run,
    }


def _log_in(context, user, base_url: str) -> None:
    """The browser gets the session of ``user`` (made by Django's test client, no form)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"]
    context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": base_url}])


class Checks:
    """Problems of every page, collected and reported together."""

    def __init__(self, width: int, axe_script, folder):
        self.width, self.axe_script, self.folder = width, axe_script, folder
        self.problems: list[str] = []
        self.console: list[str] = []
        self.visited = 0

    def watch(self, page) -> None:
        page.set_default_timeout(TIMEOUT_MS)
        page.route(AXE_URL, lambda route: route.fulfill(path=str(self.axe_script), content_type="text/javascript"))
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.console.append(f"{page.url}: JavaScript error: {error}"))

    def _console(self, page, message) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            self.console.append(f"{page.url}: {message.text} ({where})")

    def visit(self, page, visit: Visit, data: dict) -> None:
        self.console.clear()
        label, url, status = visit.label, visit.url(data), visit.status
        response = page.goto(url)
        page.wait_for_load_state("load")
        where = f"{label} ({url}) at {self.width} px"
        if response is None or response.status != status:
            self.problems.append(f"{where}: answered {response and response.status}, expected {status}")
        self.visited += 1
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        page.screenshot(path=self.folder / f"{self.visited:02d}-{slug}.png", full_page=True)
        if self.width == PHONE:
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            if scroll_width > self.width:
                self.problems.append(f"{where}: {scroll_width} px wide, wider than the screen")
        page.add_script_tag(url=AXE_URL)
        results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        for violation in results["violations"]:
            if violation["impact"] in ("serious", "critical"):
                targets = ", ".join(" ".join(node["target"]) for node in violation["nodes"][:6])
                more = len(violation["nodes"]) - 6
                self.problems.append(
                    f"{where}: axe {violation['impact']} {violation['id']} ({violation['help']}) on {targets}"
                    + (f" and {more} more" if more > 0 else "")
                )
        # A 404 page's own answer is not a problem: Chromium reports it as a failed load.
        expected = [f"status of {status}"] if status != 200 else []
        for line in self.console:
            if AXE_URL in line:  # axe's own probes (an inline style it tries), not the page's
                continue
            if not (expected and expected[0] in line and f"({page.url})" in line):
                self.problems.append(f"{where}: console error: {line}")


@pytest.mark.parametrize("width", WIDTHS, ids=["desktop", "phone"])
def test_every_page(width, browser, axe_script, artifacts, live_server, people, data):
    checks = Checks(width, axe_script, artifacts)
    contexts = {}
    for role in [None, "owner", "staff"]:
        context = browser.new_context(viewport={"width": width, "height": 900}, base_url=live_server.url)
        if role is not None:
            _log_in(context, people[role], live_server.url)
        contexts[role] = context
    pages = {role: context.new_page() for role, context in contexts.items()}
    for page in pages.values():
        checks.watch(page)

    for visit in PAGES:
        checks.visit(pages[visit.role], visit, data)

    for context in contexts.values():
        context.close()
    (artifacts / "problems.json").write_text(json.dumps(checks.problems, indent=1, ensure_ascii=False))
    assert not checks.problems, f"{len(checks.problems)} problem(s) at {width} px:\n" + "\n".join(checks.problems)
