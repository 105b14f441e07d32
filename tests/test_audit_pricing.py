"""What an attempt costs: from usage and the price sheet in force when it started, or from the
route's price per call; unpriced when nothing says, never $0. Checked on Attempt's own
recording methods, then as the audit shows it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from studio.management.commands.seed_studio import STANDARD_PRICES
from studio.models import Attempt, PriceSheet, Route
from studio.pricing import PARTIAL_IMAGE_OUTPUT_TOKENS, Usage, estimate_output_tokens
from tests.test_audit import create_openai_route, make_request

pytestmark = pytest.mark.django_db
Basis = Attempt.CostBasis
MILLION = Decimal(1_000_000)
PRICE_RISE = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def openai_route(price_sheet, provider_route) -> Route:
    return create_openai_route(fallback=provider_route)


@pytest.fixture
def raised_prices(price_sheet) -> PriceSheet:
    """A later sheet: image output up from $30 to $40 per 1M tokens from October 1st."""
    return PriceSheet.objects.create(
        model="gpt-image-2",
        effective_from=PRICE_RISE,
        **{**STANDARD_PRICES, "image_output": Decimal("40.00")},
    )


def call(request, route, *, started_at=None, usage=None) -> Attempt:
    """One successful call recorded the way the worker records it."""
    attempt = Attempt.begin(request, route)
    if started_at is not None:
        attempt.started_at = started_at
    attempt.record_success(
        usage=usage, provider_request_id="req_1", http_status=200, started=0.0, ended=1.5
    )
    attempt.refresh_from_db()
    return attempt


def fail(request, route, reason: str, http_status: int | None) -> Attempt:
    attempt = Attempt.begin(request, route)
    attempt.record_failure(
        reason=reason,
        http_status=http_status,
        error_code="",
        message=reason,
        provider_request_id="",
        started=0.0,
        ended=1.0,
    )
    attempt.refresh_from_db()
    return attempt


MEDIUM_SQUARE = Usage(
    input_text_tokens=120,
    cached_text_tokens=20,
    input_image_tokens=300,
    output_image_tokens=estimate_output_tokens(1024, 1024, "medium"),
)


def test_a_token_route_costs_its_usage_at_the_sheets_rates(designer, openai_route):
    attempt = call(make_request(designer, openai_route), openai_route, usage=MEDIUM_SQUARE)
    # 100 text x $5 + 20 cached text x $1.25 + 300 image in x $8 + 1756 image out x $30
    expected = (100 * 5 + 20 * Decimal("1.25") + 300 * 8 + 1756 * 30) / MILLION
    assert attempt.cost == expected == Decimal("0.055605")
    assert attempt.cost_basis == Basis.TOKENS
    assert attempt.price_sheet.effective_from.date().isoformat() == "2026-04-21"
    assert (attempt.input_text_tokens, attempt.cached_input_tokens) == (120, 20)
    assert attempt.output_image_tokens == 1756


def test_a_per_call_route_costs_its_flat_price_whatever_the_usage(designer, provider_route):
    attempt = call(make_request(designer, provider_route), provider_route, usage=MEDIUM_SQUARE)
    assert attempt.cost == Decimal("0.03") and attempt.cost_basis == Basis.PER_CALL
    assert attempt.price_sheet is None  # OpenAI's sheet plays no part in this contract
    assert attempt.output_image_tokens == 1756  # usage is still logged


def test_the_sheet_in_force_when_the_call_started_prices_it(
    designer,
    openai_route,
    raised_prices,
):
    usage = Usage(output_image_tokens=1000)
    before = call(
        make_request(designer, openai_route),
        openai_route,
        usage=usage,
        started_at=datetime(2026, 9, 30, 23, 59, 59, tzinfo=UTC),
    )
    after = call(
        make_request(designer, openai_route), openai_route, usage=usage, started_at=PRICE_RISE
    )
    assert before.cost == Decimal("0.03")  # priced today, at September's $30: not today's $40
    assert after.cost == Decimal("0.04")
    assert before.price_sheet != after.price_sheet == raised_prices


def test_a_call_before_any_sheet_is_unpriced(designer, openai_route):
    attempt = call(
        make_request(designer, openai_route),
        openai_route,
        usage=Usage(output_image_tokens=1000),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert attempt.cost is None and attempt.cost_basis == Basis.UNPRICED


def test_a_model_without_a_sheet_is_unpriced(designer, openai_route):
    request = make_request(designer, openai_route, requested_model="gpt-image-9")
    attempt = call(request, openai_route, usage=Usage(output_image_tokens=1000))
    assert attempt.cost is None and attempt.cost_basis == Basis.UNPRICED


def test_an_answer_without_usage_is_possibly_billed_on_a_token_route(designer, openai_route):
    request = make_request(designer, openai_route)
    attempt = call(request, openai_route, usage=None)
    assert attempt.cost is None and attempt.cost_basis == Basis.POSSIBLY_BILLED
    assert attempt.exposure == request.estimated_cost


def test_a_per_call_route_without_a_price_is_unpriced(designer, db):
    route = Route.objects.create(
        name="unpriced-gateway",
        owner="example.ai",
        base_url="http://127.0.0.1:9/v1",
        pricing_mode=Route.PricingMode.PER_CALL,
        price_per_call=None,
    )
    attempt = call(make_request(designer, route), route, usage=Usage(output_image_tokens=10))
    assert attempt.cost is None and attempt.cost_basis == Basis.UNPRICED


@pytest.mark.parametrize(
    ("route_name", "reason", "status", "cost", "basis"),
    [
        # A timeout after sending: the provider may have finished and billed.
        ("openai", "timeout", None, None, Basis.POSSIBLY_BILLED),
        ("openai", "provider_5xx", 500, Decimal(0), Basis.NOT_BILLED),
        ("openai", "rate_limit", 429, Decimal(0), Basis.NOT_BILLED),
        # An error answer is not billed, whatever the contract: nothing was delivered.
        ("gateway", "provider_5xx", 500, Decimal(0), Basis.NOT_BILLED),
    ],
)
def test_failed_calls(
    designer, openai_route, provider_route, route_name, reason, status, cost, basis
):
    route = Route.objects.get(name=route_name)
    attempt = fail(make_request(designer, route), route, reason, status)
    assert attempt.cost == cost and attempt.cost_basis == basis


def test_partial_images_add_their_output_tokens_to_estimate_and_cost(designer, openai_route):
    request = make_request(designer, openai_route, quality="medium", partial_images=2)
    estimate = openai_route.estimate(
        prompt="x" * 400, width=1024, height=1024, quality="medium", partial_images=2
    )
    assert estimate.partial_tokens == 2 * PARTIAL_IMAGE_OUTPUT_TOKENS
    assert estimate.output_tokens == 1756 + 200
    # The streamed call reports the previews in its output tokens; all are image output.
    usage = Usage.from_api({"input_tokens": 100, "output_tokens": 1956})
    attempt = call(request, openai_route, usage=usage)
    assert attempt.output_image_tokens == 1956
    assert attempt.cost == (100 * 5 + 1956 * 30) / MILLION
    assert attempt.cost == estimate.cost  # the estimate counted the same tokens
    assert attempt.request_shape["partial_images"] == 2


def test_the_audit_shows_each_attempt_under_its_own_sheet(
    client,
    admin_user,
    designer,
    openai_route,
    raised_prices,
):
    usage = Usage(output_image_tokens=1000)
    for started in (datetime(2026, 9, 15, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC)):
        call(make_request(designer, openai_route), openai_route, usage=usage, started_at=started)
    client.force_login(admin_user)
    params = {"start": "2026-09-01", "end": "2026-10-31"}
    total = client.get(reverse("audit:dashboard"), params).context["total"]
    assert total.token_cost == Decimal("0.07")  # $0.03 in September + $0.04 in October
    html = client.get(reverse("audit:attempts"), params).content.decode()
    assert "sheet of 2026-04-21" in html and "sheet of 2026-10-01" in html
