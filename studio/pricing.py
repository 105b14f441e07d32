"""Token estimates and costs for gpt-image-2, in Decimal, per price sheet."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

# Output-token factor per quality. "auto" lets the API choose, so estimates take the upper
# bound (high) and say so.
QUALITY_FACTOR = {"low": 16, "medium": 48, "high": 96}
PARTIAL_IMAGE_OUTPUT_TOKENS = 100
ONE_MILLION = Decimal(1_000_000)

# Input image tokens, by the tile rule OpenAI documents for image inputs to its GPT models:
# scale the image to fit 2048x2048, then its short side down to 768, and count
# BASE + PER_TILE for every 512-pixel tile that covers it (1024x1024 -> 4 tiles -> 765).
# The sandbox bills with this same function, as it bills output tokens with the one below.
INPUT_IMAGE_BASE_TOKENS = 85
INPUT_IMAGE_TILE_TOKENS = 170
INPUT_TILE_EDGE = 512
INPUT_FIT_EDGE = 2048
INPUT_SHORT_EDGE = 768


def estimate_output_tokens(width: int, height: int, quality: str) -> int:
    """Output tokens gpt-image-2 bills for one image of this size and quality."""
    factor = QUALITY_FACTOR["high" if quality == "auto" else quality]
    long_edge, short_edge = max(width, height), min(width, height)
    scaled = (2 * factor * short_edge + long_edge) // (2 * long_edge)
    return math.ceil(factor * scaled * (2_000_000 + width * height) / 4_000_000)


def estimate_input_image_tokens(width: int, height: int) -> int:
    """Input tokens one input image of this size costs an edit (an estimate of OpenAI's)."""
    scale = min(1.0, INPUT_FIT_EDGE / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, INPUT_SHORT_EDGE / min(width, height))
    width, height = width * scale, height * scale
    tiles = math.ceil(round(width) / INPUT_TILE_EDGE) * math.ceil(round(height) / INPUT_TILE_EDGE)
    return INPUT_IMAGE_BASE_TOKENS + INPUT_IMAGE_TILE_TOKENS * tiles


def estimate_text_tokens(prompt: str) -> int:
    """A conservative token count for a prompt: about four characters a token, rounded up."""
    return max(1, math.ceil(len(prompt) / 4))


@dataclass(frozen=True)
class Usage:
    """The token usage an image call reports, read from the API's `usage` object."""

    input_text_tokens: int = 0
    input_image_tokens: int = 0
    cached_text_tokens: int = 0
    cached_image_tokens: int = 0
    output_image_tokens: int = 0
    output_text_tokens: int = 0

    @property
    def input_tokens(self) -> int:
        return self.input_text_tokens + self.input_image_tokens

    @property
    def output_tokens(self) -> int:
        return self.output_image_tokens + self.output_text_tokens

    @classmethod
    def from_api(cls, usage: dict | None) -> Usage | None:
        """Read the Image API `usage` object. Output tokens without a breakdown are image tokens."""
        if not usage:
            return None
        inputs = usage.get("input_tokens_details") or {}
        outputs = usage.get("output_tokens_details") or {}
        output_total = int(usage.get("output_tokens") or 0)
        output_text = int(outputs.get("text_tokens") or 0)
        output_image = int(outputs.get("image_tokens") or (output_total - output_text))
        input_total = int(usage.get("input_tokens") or 0)
        input_image = int(inputs.get("image_tokens") or 0)
        input_text = int(inputs.get("text_tokens") or (input_total - input_image))
        cached = int(inputs.get("cached_tokens") or 0)
        return cls(
            input_text_tokens=input_text,
            input_image_tokens=input_image,
            cached_text_tokens=min(cached, input_text),
            output_image_tokens=output_image,
            output_text_tokens=output_text,
        )


def cost_of_usage(usage: Usage, sheet) -> Decimal:
    """USD cost of one usage record under a price sheet (anything with the per-1M rates)."""
    uncached_text = usage.input_text_tokens - usage.cached_text_tokens
    uncached_image = usage.input_image_tokens - usage.cached_image_tokens
    micro_dollars = (
        uncached_text * sheet.text_input
        + usage.cached_text_tokens * sheet.cached_text_input
        + uncached_image * sheet.image_input
        + usage.cached_image_tokens * sheet.cached_image_input
        + usage.output_image_tokens * sheet.image_output
        + usage.output_text_tokens * sheet.text_output
    )
    return Decimal(micro_dollars) / ONE_MILLION


@dataclass(frozen=True)
class Estimate:
    """A cost estimate before submission, with the parts the composer shows."""

    n: int
    tokens_per_image: int
    partial_tokens: int  # every partial preview of every image
    input_text_tokens: int
    cost_per_image: Decimal | None  # one final image's output tokens, as the calculator shows
    cost: Decimal | None  # the whole request; None when no price is known (unpriced)
    quality_upper_bound: bool
    price_per_call: Decimal | None = None
    input_image_tokens: int = 0  # every input image of an edit (source and references)
    input_image_count: int = 0

    @property
    def output_tokens(self) -> int:
        return self.n * self.tokens_per_image + self.partial_tokens

    @property
    def is_per_call(self) -> bool:
        return self.price_per_call is not None


def estimate_request(
    *,
    width: int,
    height: int,
    quality: str,
    n: int,
    partial_images: int,
    prompt: str,
    sheet=None,
    price_per_call: Decimal | None = None,
    input_images: Sequence[tuple[int, int]] = (),
) -> Estimate:
    """Estimate one request: n images, their partial previews, the prompt text and, for an
    edit, its input images (width, height each).

    A per-call route costs its flat price per image and nothing else: its contract is not
    OpenAI's token price sheet, so the two are never mixed.
    """
    tokens_per_image = estimate_output_tokens(width, height, quality)
    partial_tokens = n * partial_images * PARTIAL_IMAGE_OUTPUT_TOKENS
    text_tokens = estimate_text_tokens(prompt)
    image_tokens = sum(estimate_input_image_tokens(w, h) for w, h in input_images)
    cost_per_image = cost = None
    if price_per_call is not None:
        cost_per_image, cost = price_per_call, price_per_call * n
    elif sheet is not None:
        cost_per_image = cost_of_usage(Usage(output_image_tokens=tokens_per_image), sheet)
        cost = cost_of_usage(
            Usage(
                input_text_tokens=text_tokens,
                input_image_tokens=image_tokens,
                output_image_tokens=n * tokens_per_image + partial_tokens,
            ),
            sheet,
        )
    return Estimate(
        n=n,
        tokens_per_image=tokens_per_image,
        partial_tokens=partial_tokens,
        input_text_tokens=text_tokens,
        cost_per_image=cost_per_image,
        cost=cost,
        quality_upper_bound=quality == "auto",
        price_per_call=price_per_call,
        input_image_tokens=image_tokens,
        input_image_count=len(input_images),
    )
