"""Make, revoke and list users' API tokens from the command line (staff with shell access).

DRF's ``drf_create_token`` makes or replaces a token but can neither revoke nor list
them; this command does all three through the same functions as the user's token page
(``api.tokens``).
"""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from api import tokens


class Command(BaseCommand):
    help = "Make (create), revoke or list users' API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,revoke,list}")
        create = actions.add_parser("create", help="make a token for USERNAME and print it")
        create.add_argument("username")
        create.add_argument("--replace", action="store_true", help="replace the user's token (the old one stops)")
        revoke = actions.add_parser("revoke", help="delete USERNAME's token: programs using it are refused")
        revoke.add_argument("username")
        listing = actions.add_parser("list", help="who has a token, since when (the first characters of each)")
        listing.add_argument("username", nargs="?")

    def handle(self, *args, action: str, username: str | None = None, replace: bool = False, **options) -> None:
        if action == "list":
            self.list(username)
            return
        user = self.user(username)
        if action == "create":
            existing = tokens.token_of(user)
            if existing is not None and not replace:
                raise CommandError(
                    f"{username} already has a token (made {existing.created:%Y-%m-%d %H:%M}). "
                    f"Add --replace to make a new one; the old one then stops working."
                )
            token = tokens.issue_token(user)
            if not user.is_active:
                self.stderr.write(f"Note: {username} is inactive; the API refuses the token until they are active.")
            self.stdout.write(token.key)
        elif tokens.revoke_token(user):
            self.stdout.write(f"Revoked the token of {username}.")
        else:
            self.stdout.write(f"{username} had no token.")

    def user(self, username: str):
        try:
            return get_user_model()._default_manager.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"There is no user {username!r}.") from None

    def list(self, username: str | None) -> None:
        found = Token.objects.select_related("user").order_by("user__username")
        if username is not None:
            found = found.filter(user=self.user(username))
        for token in found:
            self.stdout.write(f"{token.user.username}\t{token.created:%Y-%m-%d %H:%M}\t{tokens.key_hint(token)}")
        if not found:
            self.stdout.write("No tokens." if username is None else f"{username} has no token.")
