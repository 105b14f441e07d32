from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from studio.management.commands.seed_studio import STANDARD_PRICES
from studio.pricing import Usage, cost_of_usage, estimate_output_tokens, estimate_request


class Sheet:
    def __init__(self, **prices):
        self.__dict__.update(prices)


STANDARD = Sheet(**STANDARD_PRICES)


@pytest.mark.parametrize(
    ("width", "height", "quality", "dollars"),
    [
        # The seed's cost-calculator figures: 1024x1024, then portrait and landscape.
        (1024, 1024, "low", "0.006"),
        (1024, 1024, "medium", "0.053"),
        (1024, 1024, "high", "0.211"),
        (1024, 1536, "low", "0.005"),
        (1024, 1536, "medium", "0.041"),
        (1024, 1536, "high", "0.165"),
        (1536, 1024, "low", "0.005"),
        (1536, 1024, "medium", "0.041"),
        (1536, 1024, "high", "0.165"),
    ],
)
def test_it_reproduces_the_seed_cost_calculator(width, height, quality, dollars):
    tokens = estimate_output_tokens(width, height, quality)
    cost = cost_of_usage(Usage(output_image_tokens=tokens), STANDARD)
    assert cost.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP) == Decimal(dollars)


def test_known_token_counts():
    assert estimate_output_tokens(1024, 1024, "low") == 196
    assert estimate_output_tokens(1024, 1024, "medium") == 1756
    assert estimate_output_tokens(1024, 1024, "high") == 7024
    assert estimate_output_tokens(1024, 1536, "high") == 5488


def test_auto_quality_is_estimated_at_the_upper_bound():
    assert estimate_output_tokens(1024, 1024, "auto") == estimate_output_tokens(1024, 1024, "high")
    assert estimate_request(
        width=1024, height=1024, quality="auto", n=1, partial_images=0, prompt="x", sheet=STANDARD
    ).quality_upper_bound


def test_cost_counts_every_token_class_at_its_own_rate():
    usage = Usage(
        input_text_tokens=1_000_000,
        cached_text_tokens=400_000,
        input_image_tokens=1_000_000,
        cached_image_tokens=250_000,
        output_image_tokens=1_000_000,
        output_text_tokens=1_000_000,
    )
    # 600k*5 + 400k*1.25 + 750k*8 + 250k*2 + 1M*30 + 1M*10, per million.
    assert cost_of_usage(usage, STANDARD) == Decimal("3") + Decimal("0.5") + Decimal("6") + Decimal(
        "0.5"
    ) + Decimal("30") + Decimal("10")


def test_usage_reads_the_image_api_usage_object():
    usage = Usage.from_api(
        {
            "input_tokens": 50,
            "output_tokens": 196,
            "total_tokens": 246,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
        }
    )
    assert usage == Usage(input_text_tokens=10, input_image_tokens=40, output_image_tokens=196)
    assert Usage.from_api(None) is None


def test_estimate_counts_images_partials_and_prompt_text():
    estimate = estimate_request(
        width=1024,
        height=1024,
        quality="low",
        n=3,
        partial_images=2,
        prompt="a" * 400,
        sheet=STANDARD,
    )
    assert estimate.output_tokens == 3 * (196 + 2 * 100)
    assert estimate.input_text_tokens == 100
    assert estimate.cost == (Decimal(100 * 5) + Decimal(estimate.output_tokens * 30)) / 1_000_000


def test_estimate_without_a_price_sheet_is_unpriced_not_zero():
    estimate = estimate_request(
        width=1024, height=1024, quality="low", n=1, partial_images=0, prompt="x", sheet=None
    )
    assert estimate.cost is None
