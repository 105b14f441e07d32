"""The size and upload rules for gpt-image-2: one source for forms, the sandbox and the browser."""

from __future__ import annotations

import re

EDGE_MULTIPLE = 16
MAX_EDGE = 3840
MAX_ASPECT_RATIO = 3
MIN_PIXELS = 655_360
MAX_PIXELS = 8_294_400
MAX_PROMPT_CHARS = 32_000

QUALITIES = ("low", "medium", "high", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("auto", "opaque", "transparent")
MIME_BY_FORMAT = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

SIZE_PATTERN = re.compile(r"^(\d{1,5})x(\d{1,5})$")

# Presets shown by the composer; every one passes size_problems().
SIZE_PRESETS = (
    ("1024x1024", "Square 1024 x 1024"),
    ("1024x1536", "Portrait 1024 x 1536"),
    ("1536x1024", "Landscape 1536 x 1024"),
    ("2048x2048", "Large square 2048 x 2048"),
    ("1440x2560", "Large portrait 1440 x 2560"),
    ("2560x1440", "Large landscape 2560 x 1440"),
    ("3840x2160", "4K landscape 3840 x 2160"),
)


def size_problems(width: int, height: int) -> list[str]:
    """Return one message per gpt-image-2 size rule the size breaks; empty when acceptable."""
    problems = []
    if width <= 0 or height <= 0:
        return ["Width and height must be positive whole numbers of pixels."]
    if width % EDGE_MULTIPLE or height % EDGE_MULTIPLE:
        problems.append(
            f"Both edges must be multiples of {EDGE_MULTIPLE} pixels ({width}x{height} is not)."
        )
    long_edge, short_edge = max(width, height), min(width, height)
    if long_edge > MAX_EDGE:
        problems.append(f"The longest edge must be at most {MAX_EDGE} pixels (it is {long_edge}).")
    if long_edge > MAX_ASPECT_RATIO * short_edge:
        problems.append(
            f"The long edge may be at most {MAX_ASPECT_RATIO} times the short edge "
            f"({long_edge}/{short_edge} = {long_edge / short_edge:.2f})."
        )
    pixels = width * height
    if pixels < MIN_PIXELS:
        problems.append(f"The image must have at least {MIN_PIXELS:,} pixels (it has {pixels:,}).")
    if pixels > MAX_PIXELS:
        problems.append(f"The image may have at most {MAX_PIXELS:,} pixels (it has {pixels:,}).")
    return problems


def parse_size(size: str) -> tuple[int, int] | None:
    """Read a "WIDTHxHEIGHT" string; None when it is not of that shape."""
    match = SIZE_PATTERN.match(size.strip()) if isinstance(size, str) else None
    if not match:
        return None
    return int(match.group(1)), int(match.group(2))
