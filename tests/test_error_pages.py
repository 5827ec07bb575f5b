"""Error pages in the site's layout, as users meet them with DEBUG off (the tests' setting)."""
from django.test import RequestFactory
from django.urls import reverse
from django.views.defaults import server_error


def test_404_page(client, user):
    client.force_login(user)
    response = client.get(reverse("classifier:detail", args=[999999]))
    page = response.content.decode()
    assert response.status_code == 404 and "We could not find that page" in page and "Upload a photo" in page


def test_403_page(client, user):
    client.force_login(user)
    response = client.get(reverse("classifier:review_dashboard"))
    page = response.content.decode()
    assert response.status_code == 403 and "You may not open this page" in page and "My pets" in page


def test_500_page_needs_nothing_that_could_fail_again(db):
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500 and "Nothing you uploaded is lost" in response.content.decode()
