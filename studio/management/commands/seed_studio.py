"""Seed what a fresh studio needs: roles, routes, the standard price sheet, demo accounts."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from studio.models import PriceSheet, Route

ROLES = ("designer", "reviewer", "admin")

# OpenAI's standard gpt-image-2 rows, USD per 1M tokens (seeds: "Pricing").
STANDARD_PRICES = {
    "text_input": Decimal("5.00"),
    "cached_text_input": Decimal("1.25"),
    "image_input": Decimal("8.00"),
    "cached_image_input": Decimal("2.00"),
    "image_output": Decimal("30.00"),
    "text_output": Decimal("10.00"),
}
GPT_IMAGE_2_RELEASE = datetime(2026, 4, 21, tzinfo=UTC)
BATCH_DISCOUNT = Decimal("0.5")
BATCH_SOURCE = (
    "OpenAI's published 50% Batch API discount on the standard rows; check against the pricing page"
)


def batch_prices(standard: dict) -> dict:
    """The Batch API tier as OpenAI publishes it: half of every standard price."""
    return {name: Decimal(str(price)) * BATCH_DISCOUNT for name, price in standard.items()}


ROUTES = [
    {
        "name": "sandbox",
        "owner": "sandbox",
        "base_url": "",
        "api_key_env": "SANDBOX_API_KEY",
        "enabled": True,
        "supports_streaming": True,
        "supports_assistant": True,
        "supports_batch": True,
    },
    {
        "name": "openai",
        "owner": "openai",
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "OPENAI_API_KEY",
        "enabled": False,
        "supports_streaming": True,
        "supports_assistant": True,
    },
    {
        "name": "laozhang",
        "owner": "laozhang.ai",
        "base_url": "https://api.laozhang.ai/v1",
        "api_key_env": "LAOZHANG_API_KEY",
        "enabled": False,
        "pricing_mode": Route.PricingMode.PER_CALL,
        "price_per_call": Decimal("0.03"),
    },
]


class Command(BaseCommand):
    help = "Create roles, routes, the standard price sheet and (with --demo-accounts) demo users."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--demo-accounts",
            action="store_true",
            help="Create designer, reviewer and admin with random passwords, printed once and "
            "saved to var/demo-accounts.txt.",
        )

    @transaction.atomic
    def handle(self, *args, demo_accounts: bool = False, **options) -> None:
        for role in ROLES:
            Group.objects.get_or_create(name=role)
        for spec in ROUTES:
            values = {"model_map": {"gpt-image-2": "gpt-image-2"}, **spec}
            name = values.pop("name")
            _, created = Route.objects.get_or_create(name=name, defaults=values)
            if created:
                self.stdout.write(f"Route {name} ({values['owner']}) created.")
        PriceSheet.objects.get_or_create(
            model="gpt-image-2",
            effective_from=GPT_IMAGE_2_RELEASE,
            tier=PriceSheet.Tier.STANDARD,
            defaults={**STANDARD_PRICES, "source": "OpenAI standard pricing rows"},
        )
        PriceSheet.objects.get_or_create(
            model="gpt-image-2",
            effective_from=GPT_IMAGE_2_RELEASE,
            tier=PriceSheet.Tier.BATCH,
            defaults={**batch_prices(STANDARD_PRICES), "source": BATCH_SOURCE, "to_check": True},
        )
        if demo_accounts:
            self.create_demo_accounts()

    def create_demo_accounts(self) -> None:
        User = get_user_model()
        created_lines = []
        for role in ROLES:
            if User.objects.filter(username=role).exists():
                continue
            password = secrets.token_urlsafe(12)
            user = User.objects.create_user(
                username=role,
                password=password,
                is_staff=role == "admin",
                is_superuser=role == "admin",
            )
            user.groups.add(Group.objects.get(name=role))
            created_lines.append(f"{role}\t{password}")
        accounts_file = settings.VAR_DIR / "demo-accounts.txt"
        if not created_lines:
            self.stdout.write(
                f"Demo accounts already exist; their passwords are in {accounts_file}."
            )
            return
        accounts_file.parent.mkdir(parents=True, exist_ok=True)
        with accounts_file.open("a") as handle:
            handle.write("\n".join(created_lines) + "\n")
        accounts_file.chmod(0o600)
        self.stdout.write(
            self.style.SUCCESS(f"Demo accounts (shown once, saved to {accounts_file}):")
        )
        for line in created_lines:
            self.stdout.write("  " + line.replace("\t", "  password: "))
