"""Make an API token for a user and print its secret (for scripts and tests)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from api.models import ApiToken


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME and print it once (only its hash is kept)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What the token is for.")
        parser.add_argument(
            "--days", type=int, default=None, help="Expire after this many days (default: never)."
        )

    def handle(self, *args, username: str, name: str, days: int | None, **options) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        if not name.strip() or len(name) > 100:
            raise CommandError("--name must be 1 to 100 characters.")
        if days is not None and not 1 <= days <= 3650:
            raise CommandError("--days must be between 1 and 3650.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        created = ApiToken.create_for(user, name.strip(), expires_at)
        self.stdout.write(created.secret)
