"""One amount reads the same on every page: the composer's estimate, the budget refusal, the
request page, the audit's cards and tables, the attempt list and the route's price label all
show $0.0059 as "$0.0059" (studio.pricing.money), never "$0.006", "$0.01" or "$0.005900".
The CSV keeps the ledger's exact figure (a spreadsheet sums it), and it is the same amount."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from studio.models import Attempt, Budget, GenerationRequest
from studio.pricing import money
from tests.test_audit import ALL_TIME, make_attempt, make_request

pytestmark = pytest.mark.django_db

AMOUNT = Decimal("0.0059")
SHOWN = "$0.0059"
MONEY = re.compile(r"\$[0-9][0-9,]*(?:\.[0-9]+)?")


def amounts_like(html: str, amount: Decimal) -> set[str]:
    """Every money figure on the page that could be this amount written another way."""
    found = set()
    html = re.sub(r'<text class="tick".*?</text>', "", html)  # chart axes: round steps
    for text in MONEY.findall(html):
        value = Decimal(text[1:].replace(",", ""))
        if abs(value - amount) < Decimal("0.0011"):
            found.add(text)
    return found


@pytest.fixture
def spent(designer, provider_route):
    """A $0.0059 call on a per-call route priced $0.0059, and a $0.01 monthly budget."""
    provider_route.price_per_call = AMOUNT
    provider_route.save(update_fields=["price_per_call"])
    Budget.objects.create(user=designer, monthly_limit=Decimal("0.01"))
    generation = make_request(designer, provider_route, estimated_cost=AMOUNT, cost=AMOUNT)
    make_attempt(generation, 1, cost=AMOUNT, basis=Attempt.CostBasis.PER_CALL)
    return generation


def test_the_rule_itself():
    assert money(AMOUNT) == SHOWN
    assert money(Decimal("0.9999")) == "$0.9999"
    assert money(Decimal("1")) == "$1.00"
    assert money(Decimal("1234.5")) == "$1,234.50"
    assert money(None) == "unknown"
    # Judged on the amount as shown (a new-user walk saw "$1.0000" for $0.99996).
    assert money(Decimal("0.99996")) == "$1.00"
    assert money(Decimal("-0.00001")) == "$0.0000"
    assert money(Decimal("-0.5")) == "-$0.5000"


def test_the_same_amount_reads_the_same_on_every_page(
    client, designer, admin_user, provider_route, spent
):
    pages = {}
    client.force_login(designer)
    preview = client.post(
        reverse("studio:composer-preview"),
        {
            "prompt": "a poster",
            "route": provider_route.pk,
            "size": "1024x1024",
            "quality": "low",
            "output_format": "png",
            "background": "auto",
            "n": "1",
            "partial_images": "0",
        },
    )
    pages["composer estimate"] = preview.content.decode()
    refused = client.post(
        reverse("studio:request-new"),
        {
            "prompt": "a poster",
            "route": provider_route.pk,
            "size": "1024x1024",
            "quality": "low",
            "output_format": "png",
            "background": "auto",
            "n": "1",
            "partial_images": "0",
        },
    )
    assert GenerationRequest.objects.count() == 1, "the budget refuses the second request"
    pages["budget refusal"] = refused.content.decode()
    pages["request page"] = client.get(spent.get_absolute_url()).content.decode()
    pages["my requests"] = client.get(
        reverse("studio:request-list") + "?view=table"
    ).content.decode()
    pages["my requests (grid)"] = client.get(reverse("studio:request-list")).content.decode()

    client.force_login(admin_user)
    pages["audit dashboard"] = client.get(reverse("audit:dashboard"), ALL_TIME).content.decode()
    pages["attempt list"] = client.get(reverse("audit:attempts"), ALL_TIME).content.decode()

    for name, html in pages.items():
        assert SHOWN in html, name
        assert amounts_like(html, AMOUNT) == {SHOWN}, name
    assert f"spent {SHOWN} of $0.0100 this month" in pages["budget refusal"]
    assert f"estimated at {SHOWN}" in pages["budget refusal"]
    assert "$0.0041 left of $0.0100 this month" in pages["composer estimate"]

    export = client.get(reverse("audit:export"), ALL_TIME)
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [Decimal(row["cost_usd"]) for row in rows] == [AMOUNT]
