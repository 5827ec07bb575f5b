"""API tokens: one per user (DRF's authtoken model), made, replaced and revoked here, by
the user's settings page and by ``manage.py api_token`` alike."""
from django.db import transaction
from rest_framework.authtoken.models import Token


def token_of(user) -> Token | None:
    return Token.objects.filter(user=user).first()


def issue_token(user) -> Token:
    """A new token for ``user``; any earlier one stops working at once."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def revoke_token(user) -> bool:
    """Delete ``user``'s token; False when there was none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)


def key_hint(token: Token) -> str:
    """The first characters of a key: enough to tell keys apart, not to use one."""
    return token.key[:6] + "…"
