"""Token estimates and costs for gpt-image-2, in Decimal, per price sheet."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_EVEN, Decimal

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


def money(amount: Decimal | float | None) -> str:
    """An amount of USD as every page and message shows it: four decimals under $1 (image
    calls cost fractions of a cent to a few cents), two from $1 up; "unknown" for None."""
    if amount is None:
        return "unknown"
    amount = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    # The rule is judged on the amount as shown: $0.99996 rounds to one dollar, so it reads
    # "$1.00", not "$1.0000"; nothing reads "-$0.0000".
    shown = amount.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)
    places = 4 if abs(shown) < 1 else 2
    text = f"{abs(shown):,.{places}f}"
    negative = shown < 0 and text.strip("0.,") != ""
    return f"-${text}" if negative else f"${text}"


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

    @property
    def is_empty(self) -> bool:
        return not any(getattr(self, name) for name in self.__dataclass_fields__)

    @classmethod
    def from_api(cls, usage: dict | None) -> Usage | None:
        """The Usage in an API `usage` object, whatever its shape; None when it holds none."""
        return read_usage(usage).usage


@dataclass(frozen=True)
class UsageReading:
    """What a provider's `usage` object said, read without trusting its shape.

    `usage` is None when nothing priceable was reported; `shape` names what was seen
    (see USAGE_SHAPES) and `problem` says, in words, why it cannot be priced.
    """

    usage: Usage | None
    shape: str
    problem: str = ""
    raw: object = None  # the provider's own JSON, kept on the attempt for audits

    @property
    def priceable(self) -> bool:
        return self.usage is not None and not self.usage.is_empty


def combine_readings(readings: list[UsageReading]) -> UsageReading | None:
    """One reading for a call reported in parts (a stream's completed events, n > 1):
    the sum when every part is priceable, else the first part that is not."""
    if not readings:
        return None
    for reading in readings:
        if not reading.priceable:
            return UsageReading(None, reading.shape, reading.problem, [r.raw for r in readings])
    total = Usage(
        **{
            name: sum(getattr(reading.usage, name) for reading in readings)
            for name in Usage.__dataclass_fields__
        }
    )
    raw = readings[0].raw if len(readings) == 1 else [reading.raw for reading in readings]
    return UsageReading(total, readings[0].shape, "", raw)


# The shapes of `usage` seen from providers, and the one name each is recorded under.
USAGE_SHAPES = {
    "image_api": "Image API usage with token details",
    "image_api_totals": "Image API usage without details (output read as image tokens)",
    "chat": "chat-style prompt_tokens / completion_tokens",
    "responses": "Responses API usage",
    "total_only": "a total without input and output counts",
    "zero": "usage with every count zero",
    "absent": "no usage",
    "unknown": "a usage object of an unknown shape",
}


# No image call comes near this many tokens in one field (a 4K image at high quality is
# about 8,000): a larger count is a provider's mistake, never a bill to record.
MAX_TOKEN_COUNT = 10_000_000


def _count(value) -> int:
    """A token count from a JSON value; anything that is not a whole number from 0 to
    MAX_TOKEN_COUNT is refused."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a token count: {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        raise ValueError(f"not a token count: {value!r}")
    return value


def _json_safe(value):
    """The provider's JSON as the database can keep it: NaN and infinities become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _details(usage: dict, *names: str) -> dict:
    for name in names:
        value = usage.get(name)
        if isinstance(value, dict):
            return value
    return {}


def _split(total: int, details: dict, image_key: str, text_key: str) -> tuple[int, int]:
    """(image, text) tokens of one direction; what the details leave out of the total goes
    to the side the details did not name (image for outputs, text for inputs)."""
    image = details.get(image_key)
    text = details.get(text_key)
    if image is not None and text is not None:
        return _count(image), _count(text)
    if image is not None:
        return _count(image), max(0, total - _count(image))
    if text is not None:
        return max(0, total - _count(text)), _count(text)
    return -1, -1


def read_usage(raw: object, *, outputs: str = "image") -> UsageReading:
    """Read a provider's usage in any shape seen in the wild; never raises.

    Accepted: the Image API's `input_tokens` / `output_tokens` with or without
    `*_tokens_details` (image and text tokens), the Responses API's (cached tokens in
    `input_tokens_details`), chat-style `prompt_tokens` / `completion_tokens` with
    `*_tokens_details`, a total alone, all zeros, none. A total alone, all zeros, none or an
    unknown shape yields no usage, with the reason in `problem`: such a call is priced from
    nothing and is never recorded as $0 (see studio.billing). `outputs` says what output
    tokens without a breakdown are: "image" for an image call, "text" for a mainline model.
    """
    if raw is not None and hasattr(raw, "model_dump"):
        raw = raw.model_dump(exclude_unset=True)  # an SDK object: the keys the provider sent
    reading = _read_usage(raw, outputs)
    kept = _json_safe(raw) if isinstance(raw, dict | list | str | int | float) else None
    return UsageReading(reading.usage, reading.shape, reading.problem, kept)


def reading_to_json(reading: UsageReading | None) -> dict | None:
    """A reading as a receipt keeps it: the counts as read, the shape, the problem, the raw."""
    if reading is None:
        return None
    return {
        "usage": None if reading.usage is None else asdict(reading.usage),
        "shape": reading.shape,
        "problem": reading.problem,
        "raw": reading.raw,
    }


def reading_from_json(data: dict | None) -> UsageReading | None:
    """The reading a receipt kept (reading_to_json), exactly as the worker read it."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    return UsageReading(
        Usage(**usage) if isinstance(usage, dict) else None,
        str(data.get("shape") or "unknown"),
        str(data.get("problem") or ""),
        data.get("raw"),
    )


def _read_usage(raw: object, outputs: str) -> UsageReading:
    if isinstance(raw, dict):
        # A key present with null says nothing (an SDK model dumps unset fields so).
        raw = {key: value for key, value in raw.items() if value is not None}
    if raw is None or raw == {}:
        return UsageReading(None, "absent", "The provider reported no usage.")
    if not isinstance(raw, dict):
        return UsageReading(
            None, "unknown", f"The usage was a {type(raw).__name__}, not an object."
        )
    try:
        if "input_tokens" in raw or "output_tokens" in raw:
            return _read_input_output(raw, outputs)
        if "prompt_tokens" in raw or "completion_tokens" in raw:
            return _read_chat(raw, outputs)
        if "total_tokens" in raw:
            total = _count(raw["total_tokens"])
            if total == 0:
                return UsageReading(None, "zero", "The provider reported zero tokens.")
            return UsageReading(
                None,
                "total_only",
                f"The provider reported {total} tokens in all, without input and output "
                "counts, so no price can be worked out.",
            )
    except (ValueError, TypeError) as error:
        return UsageReading(None, "unknown", f"The usage could not be read ({error}).")
    keys = ", ".join(sorted(str(key) for key in raw)[:8])
    return UsageReading(None, "unknown", f"The usage had no known token counts (keys: {keys}).")


def _zero_or(reading: UsageReading) -> UsageReading:
    if reading.usage is not None and reading.usage.is_empty:
        return UsageReading(None, "zero", "The provider reported zero tokens.")
    return reading


# The two families of key names providers use: (input total, output total, input details,
# output details). A chat-style answer may still name its details the Image API's way.
IMAGE_API_KEYS = (
    "input_tokens",
    "output_tokens",
    ("input_tokens_details",),
    ("output_tokens_details",),
)
CHAT_KEYS = (
    "prompt_tokens",
    "completion_tokens",
    ("prompt_tokens_details", "input_tokens_details"),
    ("completion_tokens_details", "output_tokens_details"),
)


def _read_counts(raw: dict, keys: tuple, outputs_are: str) -> tuple[Usage, bool]:
    """The Usage in one family of keys, and whether the provider broke its totals down."""
    input_key, output_key, input_details, output_details = keys
    inputs, outputs = _details(raw, *input_details), _details(raw, *output_details)
    input_total = _count(raw.get(input_key) or 0)
    output_total = _count(raw.get(output_key) or 0)
    input_image, input_text = _split(input_total, inputs, "image_tokens", "text_tokens")
    if input_image < 0:
        input_image, input_text = 0, input_total
    output_image, output_text = _split(output_total, outputs, "image_tokens", "text_tokens")
    if output_image < 0:
        # No breakdown: an image call's output is its image, a mainline model's is text.
        output_image, output_text = (
            (output_total, 0) if outputs_are == "image" else (0, output_total)
        )
    cached = _count(inputs.get("cached_tokens") or 0)
    usage = Usage(
        input_text_tokens=input_text,
        input_image_tokens=input_image,
        cached_text_tokens=min(cached, input_text),
        output_image_tokens=output_image,
        output_text_tokens=output_text,
    )
    return usage, bool(inputs or outputs)


def _read_input_output(raw: dict, outputs_are: str) -> UsageReading:
    usage, detailed = _read_counts(raw, IMAGE_API_KEYS, outputs_are)
    if outputs_are == "text":
        shape = "responses"
    else:
        shape = "image_api" if detailed else "image_api_totals"
    return _zero_or(UsageReading(usage, shape))


def _read_chat(raw: dict, outputs_are: str) -> UsageReading:
    usage, _ = _read_counts(raw, CHAT_KEYS, outputs_are)
    return _zero_or(UsageReading(usage, "chat"))


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
