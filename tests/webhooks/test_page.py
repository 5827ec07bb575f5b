"""The token page's webhook section: register a URL (public HTTPS only), see the secret once,
rotate it, send a test event, read the delivery log, delete the endpoint."""
import re

import pytest
from django.urls import reverse

from tests.helpers import store_photo
from tests.webhooks.conftest import finish
from webhooks import tasks
from webhooks.addresses import UnsafeURL, check_url
from webhooks.forms import EndpointForm
from webhooks.models import Delivery, Endpoint

TOKEN_PAGE = reverse("api:token")
ENDPOINT = reverse("webhooks:endpoint")
SECRET = re.compile(r'value="(whsec_[A-Za-z0-9+/=]+)"')


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://localhost/hook", "https://10.1.2.3/hook", "https://192.168.0.9/hook",
    "https://169.254.169.254/latest/meta-data", "https://[::1]/hook", "https://[fe80::1]/hook",
    "https://224.0.0.1/hook", "https://0.0.0.0/hook", "https://[::ffff:127.0.0.1]/hook",
])
def test_a_private_url_is_refused_without_the_setting(url, settings):
    settings.PETSITE_WEBHOOKS_ALLOW_PRIVATE = False
    form = EndpointForm({"url": url})
    assert not form.is_valid()
    assert form.errors.as_data()["url"][0].code == "private_address"
    assert "webhooks go only to public addresses" in form.errors["url"][0]


def test_only_https_and_no_credentials(settings):
    settings.PETSITE_WEBHOOKS_ALLOW_PRIVATE = False
    for url, code in [("http://93.184.215.14/hook", "not_https"), ("ftp://93.184.215.14/", "invalid"),
                      ("https://me:pw@93.184.215.14/", "credentials"),
                      ("https://no-such-host.invalid/", "unresolvable")]:
        with pytest.raises(UnsafeURL) as refused:
            check_url(url)
        assert refused.value.code == code, url
    assert check_url("https://93.184.215.14/hook")  # a public address: no lookup needed for a literal


def test_with_the_setting_http_only_on_loopback(settings):
    settings.PETSITE_WEBHOOKS_ALLOW_PRIVATE = True
    assert check_url("http://127.0.0.1:8080/hook")
    with pytest.raises(UnsafeURL, match="https://"):
        check_url("http://10.1.2.3/hook")


def test_a_refused_url_is_shown_with_its_reason_on_the_page(browser, settings):
    settings.PETSITE_WEBHOOKS_ALLOW_PRIVATE = False
    response = browser.post(ENDPOINT, {"action": "save", "url": "https://10.0.0.7/hook"}, follow=True)
    assert response.redirect_chain == [(TOKEN_PAGE, 302)]
    assert not Endpoint.objects.exists()
    page = response.content.decode()
    assert "webhooks go only to public addresses" in page
    assert 'value="https://10.0.0.7/hook"' in page  # the URL as typed, to correct


def test_the_secret_is_shown_once_and_rotating_replaces_it(browser, user, receiver):
    page = browser.post(ENDPOINT, {"action": "save", "url": receiver.url}, follow=True).content.decode()
    endpoint = Endpoint.objects.get(user=user)
    assert SECRET.findall(page) == [endpoint.secret]
    assert endpoint.base_url == "http://testserver/"
    assert endpoint.secret not in browser.get(TOKEN_PAGE).content.decode()  # once

    browser.post(ENDPOINT, {"action": "save", "url": receiver.url + "/v2"})  # a new URL keeps the secret
    assert Endpoint.objects.get(user=user).secret == endpoint.secret
    assert endpoint.secret not in browser.get(TOKEN_PAGE).content.decode()

    page = browser.post(ENDPOINT, {"action": "rotate"}, follow=True).content.decode()
    rotated = Endpoint.objects.get(user=user).secret
    assert rotated != endpoint.secret
    assert SECRET.findall(page) == [rotated]


def test_the_page_shows_the_last_deliveries(browser, user, model_version, receiver, monkeypatch,
                                            django_capture_on_commit_callbacks):
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, countdown=None: tasks.deliver.apply(args))
    browser.post(ENDPOINT, {"action": "save", "url": receiver.url})
    receiver.statuses = [500]
    pet = store_photo(user)
    with django_capture_on_commit_callbacks(execute=True):
        finish(pet, model_version)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(ENDPOINT, {"action": "test"})
    page = browser.get(TOKEN_PAGE).content.decode()
    log = page[page.index('id="webhook-deliveries"'):]
    rows = log.split("<tr>")[2:]  # after the header's
    assert len(rows) == 2
    assert "webhook.test" in rows[0]
    assert "Delivered" in rows[0]
    assert "200" in rows[0]
    assert "image.finished" in rows[1]
    assert pet.original_name in rows[1]
    assert "Pending, next try in" in rows[1]
    assert "500" in rows[1]
    assert "Answered 500 Internal Server Error" in rows[1]
    assert [r.headers["webhook-id"] for r in receiver.requests] == list(
        Delivery.objects.order_by("created_at", "pk").values_list("message_id", flat=True))


def test_only_the_last_20_deliveries_are_listed(browser, user, receiver):
    browser.post(ENDPOINT, {"action": "save", "url": receiver.url})
    endpoint = Endpoint.objects.get(user=user)
    for _ in range(25):
        Delivery.objects.create(endpoint=endpoint, event="webhook.test", payload={})
    page = browser.get(TOKEN_PAGE).content.decode()
    assert page.count("<code>webhook.test</code>") == 20


def test_deleting_the_endpoint_stops_webhooks(browser, user, model_version, receiver,
                                              django_capture_on_commit_callbacks):
    browser.post(ENDPOINT, {"action": "save", "url": receiver.url})
    response = browser.post(ENDPOINT, {"action": "delete"}, follow=True)
    assert "no more webhooks are sent" in response.content.decode()
    assert not Endpoint.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        finish(store_photo(user), model_version)
    assert not Delivery.objects.exists()


def test_another_users_endpoint_is_not_shown(client, other_user, user, receiver):
    client.force_login(user)
    client.post(ENDPOINT, {"action": "save", "url": receiver.url})
    client.force_login(other_user)
    page = client.get(TOKEN_PAGE).content.decode()
    assert receiver.url not in page
    assert "Add the endpoint" in page
