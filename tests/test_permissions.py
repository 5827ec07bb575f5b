"""One rule per URL: who gets what from every URL in the URLconf.

The test walks the whole URLconf (the site's, the admin's, the accounts' URLs) and asks
each URL as six people: anonymous, the owner of a photo, another user, staff without
any permission, a reviewer (staff in the "Reviewers" group from the migration) and a
superuser. Every URL name needs a row in RULES: a new view cannot ship without a rule.

Outcomes: a status code, or LOGIN / ADMIN_LOGIN for a redirect to that login page.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import TokenProxy

from classifier.models import PetImage
from registry.models import ModelVersion
from tests.helpers import image_bytes, store_photo, upload
from training.models import TrainingRun

LOGIN = "login page"
ADMIN_LOGIN = "admin login page"
ROLES = ["anonymous", "owner", "other", "staff", "reviewer", "superuser"]


@dataclass(frozen=True)
class Rule:
    expected: dict[str, int | str]
    method: str = "get"
    data: dict = field(default_factory=dict)


def row(anonymous, owner, other, staff, reviewer, superuser, **request) -> Rule:
    return Rule(dict(zip(ROLES, [anonymous, owner, other, staff, reviewer, superuser], strict=True)), **request)


def everyone(outcome, **request) -> Rule:
    return row(*[outcome] * len(ROLES), **request)


def logged_in(outcome=200, **request) -> Rule:
    """Any logged-in user; anonymous users are sent to log in."""
    return row(LOGIN, *[outcome] * (len(ROLES) - 1), **request)


def owner_only(outcome=200, **request) -> Rule:
    """The photo's owner only; to anyone else the photo does not exist (ids reveal nothing)."""
    return row(LOGIN, outcome, 404, 404, 404, 404, **request)


def photo_file() -> Rule:
    """The photo's owner, and whoever may view every photo (reviewers, superusers)."""
    return row(LOGIN, 200, 404, 404, 200, 200)


def permission(granted=200) -> Rule:
    """A site page that needs a model permission: 403 to users without it."""
    return row(LOGIN, 403, 403, 403, granted, granted)


def admin_page(staff, reviewer, superuser=200, **request) -> Rule:
    """An admin page: non-staff users go to the admin's login; staff get what their permissions allow."""
    return row(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, staff, reviewer, superuser, **request)


RULES: dict[str, Rule] = {
    # --- probes for load balancers (petsite/health.py): no login, nothing private ---------
    "healthz": everyone(200),
    "readyz": everyone(200),  # database, broker and storage answer in tests
    # --- the site ------------------------------------------------------------------------
    "classifier:gallery": everyone(200),  # the landing page for visitors, each user's own gallery
    "classifier:upload": logged_in(),
    "classifier:detail": owner_only(),
    "classifier:delete": owner_only(),  # GET: the confirmation page
    "classifier:status": owner_only(),
    "classifier:statuses": logged_in(),  # others' ids are absent from the answer (tests/classifier/test_live_status.py)
    "classifier:feedback": owner_only(302, method="post", data={"answer": "wrong", "label": "pug"}),
    # Training from the site: the TrainingRun permissions (superusers only by default), and
    # promotion needs the permission to change model versions. POSTs answer with a redirect.
    "training:run_list": row(LOGIN, 403, 403, 403, 403, 200),
    "training:run": row(LOGIN, 403, 403, 403, 403, 200),
    "training:run_status": row(LOGIN, 403, 403, 403, 403, 200),
    "training:run_cancel": row(LOGIN, 403, 403, 403, 403, 302, method="post"),
    "training:run_promote": row(LOGIN, 403, 403, 403, 403, 302, method="post"),
    "classifier:image_file": photo_file(),
    "classifier:thumbnail": photo_file(),
    "classifier:heatmap": photo_file(),
    "classifier:explain": owner_only(409, method="post"),  # asks for the heatmap; the photo here has no result
    "classifier:review_dashboard": permission(),
    "registry:model_list": permission(),
    "registry:model_detail": permission(),
    # "Make active": the permission to change model versions, as the admin's action (superusers).
    "registry:model_activate": row(LOGIN, 403, 403, 403, 403, 302, method="post"),
    "registry:model_figure": permission(),
    # --- the JSON API (api/): a token or the session; anonymous callers get 401 ------------
    "api:image-list": row(401, 200, 200, 200, 200, 200),  # each caller's own images
    "api:image-detail": row(401, 200, 404, 404, 404, 404),  # owner-only, as the photo's page
    "api:image-file": row(401, 200, 404, 404, 200, 200),  # as the site's photo files
    "api:image-thumbnail": row(401, 200, 404, 404, 200, 200),
    "api:image-heatmap": row(401, 200, 404, 404, 200, 200),
    "api:image-explain": row(401, 409, 404, 404, 404, 404, method="post"),  # as classifier:explain
    "api:image-feedback": row(401, 200, 404, 404, 404, 404, method="post", data={"answer": "wrong", "label": "pug"}),
    "api:model-list": row(401, 403, 403, 403, 200, 200),  # the model pages' permission
    "api:model-detail": row(401, 403, 403, 403, 200, 200),
    "api:schema": everyone(200),
    "api:docs": everyone(200),
    "api:token": logged_in(),  # the user's own token page
    "api:not-found": everyone(404),  # any other address under /api/: a problem+json 404
    "webhooks:endpoint": logged_in(302, method="post"),  # the token page's webhook section: back to it (issue 18)
    # --- accounts (password reset is not offered: no e-mail is configured in tests) -------
    "signup": everyone(200),
    "login": everyone(200),
    "logout": everyone(LOGIN, method="post"),  # logged out, on to the login page
    "password_change": logged_in(),
    "password_change_done": logged_in(),
    "password_reset": everyone(404),
    "password_reset_done": everyone(404),
    "password_reset_confirm": everyone(404),
    "password_reset_complete": everyone(404),
    # --- the admin: staff only, then each model's permissions ------------------------------
    "admin:index": admin_page(200, 200),
    "admin:login": row(200, 200, 200, 302, 302, 302),  # staff are already in: to the index
    "admin:logout": row(302, 302, 302, LOGIN, LOGIN, LOGIN, method="post"),  # non-staff: to the admin index
    "admin:password_change": admin_page(200, 200),
    "admin:password_change_done": admin_page(200, 200),
    "admin:jsi18n": admin_page(200, 200),
    "admin:autocomplete": admin_page(403, 403, 403),  # without a field to complete
    "admin:view_on_site": admin_page(302, 302, 302),  # to the photo's page, which is owner-only
    "admin:app_list": admin_page(404, 200),  # the "classifier" app
    # Pet images: reviewers view, change and review; nobody adds (photos come from uploads).
    "admin:classifier_petimage_changelist": admin_page(403, 200),
    "admin:classifier_petimage_add": admin_page(403, 403, 403),
    "admin:classifier_petimage_change": admin_page(403, 200),
    "admin:classifier_petimage_history": admin_page(403, 200),
    "admin:classifier_petimage_delete": admin_page(403, 403),
    # Model versions: reviewers view them.
    "admin:registry_modelversion_changelist": admin_page(403, 200),
    "admin:registry_modelversion_add": admin_page(403, 403),
    "admin:registry_modelversion_change": admin_page(403, 200),
    "admin:registry_modelversion_history": admin_page(403, 200),
    "admin:registry_modelversion_delete": admin_page(403, 403),
    # Users and groups: superusers only.
    "admin:auth_user_changelist": admin_page(403, 403),
    "admin:auth_user_add": admin_page(403, 403),
    "admin:auth_user_change": admin_page(403, 403),
    "admin:auth_user_history": admin_page(403, 403),
    "admin:auth_user_delete": admin_page(403, 403),
    "admin:auth_user_password_change": admin_page(403, 403),
    "admin:auth_group_changelist": admin_page(403, 403),
    "admin:auth_group_add": admin_page(403, 403),
    "admin:auth_group_change": admin_page(403, 403),
    "admin:auth_group_history": admin_page(403, 403),
    "admin:auth_group_delete": admin_page(403, 403),
    # API tokens (DRF's authtoken): superusers only; users manage their own on api:token.
    "admin:authtoken_tokenproxy_changelist": admin_page(403, 403),
    "admin:authtoken_tokenproxy_add": admin_page(403, 403),
    "admin:authtoken_tokenproxy_change": admin_page(403, 403),
    "admin:authtoken_tokenproxy_history": admin_page(403, 403),
    "admin:authtoken_tokenproxy_delete": admin_page(403, 403),
    # Webhooks (issue 18): superusers only; users manage their own endpoint on api:token.
    **{f"admin:webhooks_{model}_{page}": admin_page(*outcome)
       for model in ("endpoint", "delivery") for page, outcome in [
           ("changelist", (403, 403)), ("add", (403, 403, 403)), ("change", (403, 403)), ("history", (403, 403)),
           ("delete", (403, 403))]},
    # Login records (django-axes): superusers only; written by axes, never added by hand.
    "admin:axes_accessattempt_changelist": admin_page(403, 403),
    "admin:axes_accessattempt_add": admin_page(403, 403, 403),
    "admin:axes_accessattempt_change": admin_page(403, 403),
    "admin:axes_accessattempt_history": admin_page(403, 403),
    "admin:axes_accessattempt_delete": admin_page(403, 403),
    "admin:axes_accesslog_changelist": admin_page(403, 403),
    "admin:axes_accesslog_add": admin_page(403, 403, 403),
    "admin:axes_accesslog_change": admin_page(403, 403),
    "admin:axes_accesslog_history": admin_page(403, 403),
    "admin:axes_accesslog_delete": admin_page(403, 403),
    "admin:axes_accessfailurelog_changelist": admin_page(403, 403),
    "admin:axes_accessfailurelog_add": admin_page(403, 403, 403),
    "admin:axes_accessfailurelog_change": admin_page(403, 403),
    "admin:axes_accessfailurelog_history": admin_page(403, 403),
    "admin:axes_accessfailurelog_delete": admin_page(403, 403),
}
# The unversioned alias of the API's endpoints (/api/images/… for /api/v1/images/…, api/urls.py):
# the same views, the same rules.
RULES |= {
    f"api:unversioned:{name.removeprefix('api:')}": rule for name, rule in list(RULES.items())
    if name.startswith(("api:image", "api:model"))
}


def url_patterns(resolver: URLResolver | None = None, namespace: str = "", params: tuple[str, ...] = ()):
    """(full name or None, namespace, URL parameter names) of every pattern, recursively."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        names = params + tuple(pattern.pattern.regex.groupindex)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from url_patterns(pattern, inner, names)
        else:
            yield (f"{namespace}{pattern.name}" if pattern.name else None), namespace, names


URLS = {name: params for name, _, params in url_patterns() if name}


def test_every_url_has_a_rule_and_every_rule_a_url():
    assert sorted(set(URLS) - set(RULES)) == [], "URLs without a rule: add a row to RULES"
    assert sorted(set(RULES) - set(URLS)) == [], "rules for URLs that no longer exist"


def test_every_url_has_a_name():
    """A row needs a name. The admin's own unnamed URLs only redirect to its named ones."""
    unnamed = [namespace for name, namespace, _ in url_patterns() if name is None]
    assert unnamed
    assert set(unnamed) == {"admin:"}


# --- the people and the things they ask for ----------------------------------------------


@pytest.fixture
def people(django_user_model) -> dict:
    make = django_user_model.objects.create_user
    reviewer = make("reviewer", password="pw", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Reviewers"))
    return {
        "anonymous": None,
        "owner": make("owner", password="pw"),
        "other": make("other", password="pw"),
        "staff": make("staff", password="pw", is_staff=True),
        "reviewer": reviewer,
        "superuser": django_user_model.objects.create_superuser("root", password="pw"),
    }


@pytest.fixture
def objects(people) -> dict:
    """One object of each kind the URLs name, keyed by "<app>_<model>" (as in admin URL names)."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    photo = upload()
    image = store_photo(people["owner"], photo)
    image.heatmap.save("heatmap.jpg", ContentFile(image_bytes()))
    figure = default_storage.save("models/perm-v1/figures/loss.png", ContentFile(image_bytes(fmt="PNG")))
    version = ModelVersion.objects.create(
        name="perm-v1", file=ContentFile(b"not read by any page", name="perm-v1.pt"), figures={"loss": figure}
    )
    seen = {"user_agent": "test", "ip_address": "198.51.100.7", "username": "owner", "http_accept": "*/*",
            "path_info": reverse("login")}
    return {
        "classifier_petimage": image,
        "training_trainingrun": TrainingRun.objects.create(state=TrainingRun.State.FAILED, is_current=False),
        "registry_modelversion": version,
        "auth_user": people["other"],
        "auth_group": Group.objects.get(name="Reviewers"),
        "authtoken_tokenproxy": TokenProxy.objects.create(user=people["other"]),
        "axes_accessattempt": AccessAttempt.objects.create(**seen, get_data="", post_data="", failures_since_start=1),
        "axes_accesslog": AccessLog.objects.create(**seen),
        "axes_accessfailurelog": AccessFailureLog.objects.create(**seen, locked_out=False),
        **_webhooks(people["other"]),
    }


def _webhooks(user) -> dict:
    from webhooks.models import Delivery, Endpoint

    endpoint = Endpoint.objects.create(user=user, url="https://example.com/hook", base_url="http://testserver/")
    return {"webhooks_endpoint": endpoint,
            "webhooks_delivery": Delivery.objects.create(endpoint=endpoint, event="webhook.test", payload={})}


def url_kwargs(name: str, params: tuple[str, ...], objects: dict) -> dict:
    """The URL parameters, filled from the fixtures (the owner's photo, the model version, ...)."""
    image, version = objects["classifier_petimage"], objects["registry_modelversion"]
    admin_object = next((obj for key, obj in objects.items() if name.startswith(f"admin:{key}_")), None)
    values = {
        "pk": objects["training_trainingrun"].pk if name.startswith("training:run") else image.pk,
        "name": version.name,
        "figure": "loss",
        "object_id": (admin_object or image).pk,
        "id": objects["auth_user"].pk,
        "content_type_id": ContentType.objects.get_for_model(PetImage).pk,
        "app_label": "classifier",
        "uidb64": "MQ",
        "token": "set-password",
    }
    return {param: values[param] for param in params}


def outcome(response) -> int | str:
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith(reverse("admin:login")):
            return ADMIN_LOGIN
        if location.startswith(reverse("login")):
            return LOGIN
    return response.status_code


@pytest.mark.parametrize("name", sorted(URLS))
def test_url_rule(client, people, objects, name):
    assert name in RULES, f"{name} has no rule: add a row to RULES"
    rule = RULES[name]
    url = reverse(name, kwargs=url_kwargs(name, URLS[name], objects))
    actual = {}
    for role in ROLES:
        client.logout()
        if people[role] is not None:
            client.force_login(people[role])
        actual[role] = outcome(getattr(client, rule.method)(url, rule.data))
    assert actual == rule.expected, url
