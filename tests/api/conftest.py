"""API clients for each kind of caller: a token (programs), the session (the site's scripts)."""
import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from api import tokens
from tests.classifier.conftest import make_image  # noqa: F401  (images in known states, for the API's tests too)


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


def client_with_token(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue_token(user).key}")
    return client


@pytest.fixture
def owner(user) -> APIClient:
    """Alice, who owns the images ``make_image`` makes, with her token."""
    return client_with_token(user)


@pytest.fixture
def other(other_user) -> APIClient:
    return client_with_token(other_user)


@pytest.fixture
def staff(django_user_model) -> APIClient:
    """Staff without any permission."""
    return client_with_token(django_user_model.objects.create_user("carol", password="pw", is_staff=True))


@pytest.fixture
def reviewer(django_user_model) -> APIClient:
    """Staff in the Reviewers group (from the migration): views every image and model version on the site."""
    user = django_user_model.objects.create_user("rita", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return client_with_token(user)


@pytest.fixture
def superuser(django_user_model) -> APIClient:
    return client_with_token(django_user_model.objects.create_superuser("root", password="pw"))
