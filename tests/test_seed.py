from __future__ import annotations

import stat
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory

from studio.models import PriceSheet, Route

pytestmark = pytest.mark.django_db


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_studio", stdout=out, **options)
    return out.getvalue()


def test_it_seeds_routes_and_the_standard_price_sheet():
    seed()
    sandbox, openai, laozhang = (
        Route.objects.get(name=n) for n in ("sandbox", "openai", "laozhang")
    )
    assert (sandbox.owner, sandbox.enabled) == ("sandbox", True)
    assert (openai.owner, openai.enabled, openai.api_key_env) == ("openai", False, "OPENAI_API_KEY")
    assert (laozhang.owner, laozhang.enabled, laozhang.pricing_mode, laozhang.price_per_call) == (
        "laozhang.ai",
        False,
        "per_call",
        Decimal("0.03"),
    )
    sheet = PriceSheet.objects.in_force("gpt-image-2")
    assert (sheet.text_input, sheet.cached_text_input, sheet.image_input) == (5, Decimal("1.25"), 8)
    assert (sheet.cached_image_input, sheet.image_output, sheet.text_output) == (2, 30, 10)


def test_demo_accounts_get_random_passwords_shown_once_and_saved(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = seed(demo_accounts=True)
    saved = dict(
        line.split("\t") for line in (tmp_path / "demo-accounts.txt").read_text().splitlines()
    )
    assert set(saved) == {"designer", "reviewer", "admin"}
    assert stat.S_IMODE((tmp_path / "demo-accounts.txt").stat().st_mode) == 0o600
    for role, password in saved.items():
        assert password in first
        user = authenticate(RequestFactory().post("/"), username=role, password=password)
        assert user is not None and user.groups.filter(name=role).exists()
    assert authenticate(
        RequestFactory().post("/"), username="admin", password=saved["admin"]
    ).is_superuser
    assert len(set(saved.values())) == 3

    second = seed(demo_accounts=True)
    assert "already exist" in second
    assert not any(password in second for password in saved.values())
    assert Route.objects.count() == 3
    # The standard row, and the batch tier at half price, marked to check.
    assert sorted(PriceSheet.objects.values_list("tier", "to_check")) == [
        ("batch", True),
        ("standard", False),
    ]
