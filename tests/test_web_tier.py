"""The web process never imports PyTorch: it costs about 870 MiB per process and the web
never runs a model. A fresh process serves every page kind of the site (as a superuser,
so that each view really runs) and then must not have torch loaded."""
import json
import re
import subprocess
import sys

import pytest
from django.urls import reverse

from classifier.models import PetImage
from tests.conftest import BASE_DIR, worker_env
from tests.helpers import upload

SERVE_AND_CHECK = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
import petsite.wsgi  # what gunicorn loads
client = Client()
client.force_login(get_user_model().objects.get(username="root"))
statuses = {url: client.get(url).status_code for url in json.loads(sys.argv[1])}
print(json.dumps({"statuses": statuses, "torch": "torch" in sys.modules, "torchvision": "torchvision" in sys.modules}))
"""


@pytest.mark.slow
def test_the_web_process_never_imports_torch(transactional_db, client, model_version, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-123"))
    client.post(reverse("classifier:upload"), {"image": upload()})
    pet = PetImage.objects.get()
    urls = [
        reverse("classifier:gallery"), reverse("classifier:upload"), reverse("classifier:review_dashboard"),
        *(reverse(name, args=[pet.pk]) for name in
          ["classifier:detail", "classifier:status", "classifier:image_file", "classifier:thumbnail"]),
        reverse("registry:model_list"), reverse("registry:model_detail", args=[model_version.name]),
        reverse("admin:index"), reverse("admin:classifier_petimage_changelist"),
        reverse("admin:classifier_petimage_change", args=[pet.pk]),
        reverse("admin:registry_modelversion_changelist"),
        reverse("admin:registry_modelversion_change", args=[model_version.pk]),
    ]
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_CHECK, json.dumps(urls)], cwd=BASE_DIR,
        env=worker_env(ALLOWED_HOSTS="testserver"), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["statuses"].values()) == {200}, report["statuses"]
    assert not report["torch"]
    assert not report["torchvision"]


# --- Headers: a Content-Security-Policy that needs no inline code ---------------------------

INLINE_CODE = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>"  # a script without src (JSON data is no code)
    r"|<style\b"  # a style element
    r"|\sstyle=[\"']"  # a style attribute
    r"|\son[a-z]+=[\"']",  # an event handler attribute
    re.IGNORECASE,
)


def test_no_template_needs_inline_script_or_style():
    """The policy allows no inline script or style: every template keeps its code in static/."""
    found = []
    for template in sorted((BASE_DIR / "templates").rglob("*.html")):
        for match in INLINE_CODE.finditer(template.read_text()):
            found.append(f"{template.relative_to(BASE_DIR)}: {match.group(0)}")
    assert not found, found


def test_every_page_has_the_policy(client, user):
    client.force_login(user)
    for url in [reverse("classifier:gallery"), reverse("classifier:upload"), reverse("api:docs"), "/no-such-page/"]:
        policy = client.get(url)["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'", policy
        assert directives["style-src"] == "'self'", policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert directives["object-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
