"""API tokens: made, replaced and revoked by their user on a page of the site, and by staff
with ``manage.py api_token``; a token stops working the moment it is replaced or revoked."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

PAGE = reverse("api:token")
IMAGES = reverse("api:image-list")


def works(key: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    status = client.get(IMAGES).status_code
    assert status in (200, 401)
    return status == 200


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


# --- the page ------------------------------------------------------------------------------


def test_the_menu_leads_to_the_page_and_it_offers_a_token(logged_in):
    assert PAGE in logged_in.get(reverse("classifier:gallery")).content.decode()
    page = logged_in.get(PAGE).content.decode()
    assert "You have no token." in page
    assert "Make a token" in page
    assert reverse("api:docs") in page


def test_a_new_token_is_shown_once_and_works(logged_in, user):
    response = logged_in.post(PAGE, {"action": "create"})
    assert response.status_code == 302
    assert response["Location"] == PAGE
    key = Token.objects.get(user=user).key

    shown = logged_in.get(PAGE).content.decode()
    assert key in shown
    assert "shown only this once" in shown
    again = logged_in.get(PAGE).content.decode()
    assert key not in again
    assert key[:6] in again
    assert "Revoke it" in again
    assert "made just now." in again  # the site's one date style (petsite/dates.py)
    assert works(key)


def test_replacing_stops_the_old_token(logged_in, user):
    logged_in.post(PAGE, {"action": "create"})
    old = Token.objects.get(user=user).key
    logged_in.post(PAGE, {"action": "create"})
    new = Token.objects.get(user=user).key
    assert new != old
    assert new in logged_in.get(PAGE).content.decode()
    assert works(new)
    assert not works(old)


def test_revoking_stops_the_token(logged_in, user):
    logged_in.post(PAGE, {"action": "create"})
    key = Token.objects.get(user=user).key
    response = logged_in.post(PAGE, {"action": "revoke"}, follow=True)
    assert "Your API token is revoked" in response.content.decode()
    assert not Token.objects.filter(user=user).exists()
    assert not works(key)


def test_each_user_manages_only_their_own_token(logged_in, user, other_user):
    theirs = Token.objects.create(user=other_user)
    logged_in.post(PAGE, {"action": "create"})
    logged_in.post(PAGE, {"action": "revoke"})
    assert works(theirs.key)
    assert theirs.key not in logged_in.get(PAGE).content.decode()


def test_an_unknown_action_changes_nothing(logged_in, user):
    logged_in.post(PAGE, {"action": "create"})
    key = Token.objects.get(user=user).key
    assert logged_in.post(PAGE, {"action": "steal"}).status_code == 302
    assert Token.objects.get(user=user).key == key


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    for response in (client.get(PAGE), client.post(PAGE, {"action": "create"})):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not Token.objects.exists()


def test_the_page_needs_the_csrf_token(user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.post(PAGE, {"action": "create"}).status_code == 403
    assert not Token.objects.exists()


# --- the command ---------------------------------------------------------------------------


def run(*args) -> str:
    out = StringIO()
    call_command("api_token", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_staff_make_list_and_revoke_tokens_with_the_command(user, other_user):
    key = run("create", "alice").strip()
    assert key == Token.objects.get(user=user).key
    assert works(key)

    with pytest.raises(CommandError, match="already has a token.*--replace"):
        run("create", "alice")
    new = run("create", "alice", "--replace").strip()
    assert new != key
    assert works(new)
    assert not works(key)

    run("create", "bob")
    listing = run("list")
    assert [line.split("\t")[0] for line in listing.splitlines()] == ["alice", "bob"]
    assert new not in listing
    assert new[:6] in listing
    assert run("list", "bob").splitlines()[0].startswith("bob\t")

    assert run("revoke", "alice") == "Revoked the token of alice.\n"
    assert not works(new)
    assert run("revoke", "alice") == "alice had no token.\n"
    assert run("list", "alice") == "alice has no token.\n"


def test_the_command_names_an_unknown_user(db):
    with pytest.raises(CommandError, match="There is no user 'nobody'"):
        run("create", "nobody")
    with pytest.raises(CommandError, match="There is no user 'nobody'"):
        run("list", "nobody")
