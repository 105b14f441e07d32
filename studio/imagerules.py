"""The size and upload rules for gpt-image-2: one source for forms, the sandbox and the browser."""

from __future__ import annotations

import re
from collections.abc import Iterable

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
    return [message for _edge, message in size_problems_by_edge(width, height)]


def size_problems_by_edge(width: int, height: int) -> list[tuple[str | None, str]]:
    """size_problems() with the edge each problem belongs to: "width" or "height" when one
    edge breaks the rule (the one not a multiple, the longest, the long edge of a too-wide
    ratio), None when the size as a whole does (both edges, or the pixel count)."""
    if width <= 0 or height <= 0:
        edge = None if width <= 0 and height <= 0 else ("width" if width <= 0 else "height")
        return [(edge, "Width and height must be positive whole numbers of pixels.")]
    problems: list[tuple[str | None, str]] = []
    off_grid = [name for name, px in (("width", width), ("height", height)) if px % EDGE_MULTIPLE]
    if off_grid:
        problems.append(
            (
                off_grid[0] if len(off_grid) == 1 else None,
                f"Both edges must be multiples of {EDGE_MULTIPLE} pixels "
                f"({width}x{height} is not).",
            )
        )
    long_edge, short_edge = max(width, height), min(width, height)
    long_name = "width" if width >= height else "height"
    if long_edge > MAX_EDGE:
        problems.append(
            (long_name, f"The longest edge must be at most {MAX_EDGE} pixels (it is {long_edge}).")
        )
    if long_edge > MAX_ASPECT_RATIO * short_edge:
        problems.append(
            (
                long_name,
                f"The long edge may be at most {MAX_ASPECT_RATIO} times the short edge "
                f"({long_edge}/{short_edge} = {long_edge / short_edge:.2f}).",
            )
        )
    pixels = width * height
    if pixels < MIN_PIXELS:
        problems.append(
            (None, f"The image must have at least {MIN_PIXELS:,} pixels (it has {pixels:,}).")
        )
    if pixels > MAX_PIXELS:
        problems.append(
            (None, f"The image may have at most {MAX_PIXELS:,} pixels (it has {pixels:,}).")
        )
    return problems


def parse_size(size: str) -> tuple[int, int] | None:
    """Read a "WIDTHxHEIGHT" string; None when it is not of that shape."""
    match = SIZE_PATTERN.match(size.strip()) if isinstance(size, str) else None
    if not match:
        return None
    return int(match.group(1)), int(match.group(2))


# Input images and masks for edits (CreateImageEditRequest). OpenAI publishes the count, the
# formats and the byte limits; the pixel limit is the studio's own guard for the decoder: an
# 8K frame (7680x4320), or a 24-megapixel photo, and no more, which is also where Pillow stops
# with DecompressionBombError under the limit imagegen.py sets.
MAX_INPUT_IMAGES = 16
MAX_INPUT_BYTES = 50 * 1024 * 1024
MAX_INPUT_PIXELS = 4 * MAX_PIXELS
MAX_MASK_BYTES = 4 * 1024 * 1024
ALLOWED_INPUT_FORMATS = ("png", "jpeg", "webp")
INPUT_MIME_TYPES = tuple(MIME_BY_FORMAT[name] for name in ALLOWED_INPUT_FORMATS)
MASK_FORMAT = "png"


# Every upload and mask message, as templates: the functions below fill them for the forms and
# the sandbox, and rules_for_browser() hands the same text to the browser's checks.
UPLOAD_MESSAGES = {
    "no_input": "An edit needs at least one input image.",
    "too_many_inputs": "An edit takes at most {max_images} input images ({count} given).",
    "input_bytes": "Each input image must be smaller than {limit} (this one is {size}).",
    "input_format": "Each input image must be a PNG, JPEG or WebP file (this one is {shown}).",
    "input_pixels": "Each input image may have at most {max_pixels} pixels "
    "(this one has {pixels}).",
    "unreadable": "not a readable image",
    "damaged": "The file is damaged or cut short: it cannot be read as a whole {format} image.",
    "trailing_data": "The file goes on for {extra} bytes after the end of its {format} image "
    "(HTML or a script, say). Save it again from an image editor and choose it again.",
    "gps": "The photo carries GPS location data (EXIF). Export it without its location and "
    "choose it again: the studio does not send where a photo was taken to an image provider.",
    "mask_bytes": "The mask must be smaller than {limit} (it is {size}).",
    "mask_pixels": "The mask has too many pixels ({pixels}): it must be the size of the image, "
    "{width}x{height}.",
    "mask_format": "The mask must be a PNG file (it is {shown}).",
    "mask_alpha": "The mask must be a PNG with an alpha channel: its fully transparent pixels "
    "mark the area to edit.",
    "mask_size": "The mask must have the same dimensions as the image "
    "(mask {mask_width}x{mask_height}, image {width}x{height}).",
}


# The output settings' rules that the browser checks too.
TRANSPARENT_FORMATS = ("png", "webp")
SETTING_MESSAGES = {
    "transparent_format": "A transparent background needs PNG or WebP output; {format} has no "
    "transparency. Choose PNG or WebP, or an opaque background.",
}


def background_problems(background: str | None, output_format: str | None) -> list[str]:
    """A transparent background is only possible in a format with an alpha channel."""
    if background == "transparent" and output_format not in TRANSPARENT_FORMATS:
        shown = (output_format or "this format").upper()
        return [SETTING_MESSAGES["transparent_format"].format(format=shown)]
    return []


def upload_message(key: str, **values: object) -> str:
    return UPLOAD_MESSAGES[key].format(**values)


def input_count_problems(count: int) -> list[str]:
    """One message when an edit has no input image or more than MAX_INPUT_IMAGES."""
    if count < 1:
        return [upload_message("no_input")]
    if count > MAX_INPUT_IMAGES:
        return [upload_message("too_many_inputs", max_images=MAX_INPUT_IMAGES, count=count)]
    return []


def _shown_format(image_format: str | None) -> str:
    return image_format.upper() if image_format else UPLOAD_MESSAGES["unreadable"]


def input_image_problems(
    image_format: str | None, image_bytes: int, width: int = 0, height: int = 0
) -> list[str]:
    """Problems with one input image; `image_format` is None when it could not be read.

    Formats are the lower-case names of ALLOWED_INPUT_FORMATS ("png", "jpeg", "webp").
    Width and height are checked only when known (non-zero).
    """
    problems = []
    if image_bytes > MAX_INPUT_BYTES:
        limit, size = sizes_apart(MAX_INPUT_BYTES, image_bytes)
        problems.append(upload_message("input_bytes", limit=limit, size=size))
    if image_format not in ALLOWED_INPUT_FORMATS:
        problems.append(upload_message("input_format", shown=_shown_format(image_format)))
    if width * height > MAX_INPUT_PIXELS:
        problems.append(pixel_problem(width * height))
    return problems


def pixel_problem(pixels: int) -> str:
    return upload_message("input_pixels", max_pixels=f"{MAX_INPUT_PIXELS:,}", pixels=f"{pixels:,}")


def mask_pixel_problem(pixels: int, source_width: int, source_height: int) -> str:
    return upload_message(
        "mask_pixels", pixels=f"{pixels:,}", width=source_width, height=source_height
    )


def mask_problems(
    mask_width: int,
    mask_height: int,
    mask_format: str | None,
    mask_has_alpha: bool,
    mask_bytes: int,
    source_width: int,
    source_height: int,
) -> list[str]:
    """Problems with a mask for an edit whose first image is source_width x source_height.

    The mask's fully transparent pixels (alpha 0) mark the area to edit, so it must be a PNG
    with an alpha channel, under MAX_MASK_BYTES, and exactly the size of the first image.
    """
    problems = []
    if mask_bytes > MAX_MASK_BYTES:
        limit, size = sizes_apart(MAX_MASK_BYTES, mask_bytes)
        problems.append(upload_message("mask_bytes", limit=limit, size=size))
    if mask_format != MASK_FORMAT:
        problems.append(upload_message("mask_format", shown=_shown_format(mask_format)))
    elif not mask_has_alpha:
        problems.append(upload_message("mask_alpha"))
    readable = mask_format is not None and mask_width > 0 and mask_height > 0
    if readable and (mask_width, mask_height) != (source_width, source_height):
        problems.append(
            upload_message(
                "mask_size",
                mask_width=mask_width,
                mask_height=mask_height,
                width=source_width,
                height=source_height,
            )
        )
    return problems


def edit_output_size(source_width: int, source_height: int) -> tuple[int, int]:
    """The legal output size closest to the source's own: the same shape, edges rounded to
    multiples of 16, scaled into the pixel and edge limits. The sandbox (and the drift check)
    crop about the centre when the shapes differ, so keeping the shape keeps every pixel."""
    if not size_problems(source_width, source_height):
        return source_width, source_height
    ratio = max(source_width, source_height) / max(1, min(source_width, source_height))
    ratio = min(ratio, MAX_ASPECT_RATIO)
    landscape = source_width >= source_height
    pixels = min(max(source_width * source_height, MIN_PIXELS), MAX_PIXELS)
    short = (pixels / ratio) ** 0.5
    long_edge = min(MAX_EDGE, short * ratio)
    short = long_edge / ratio
    for _ in range(64):
        long_px = max(EDGE_MULTIPLE, round(long_edge / EDGE_MULTIPLE) * EDGE_MULTIPLE)
        short_px = max(EDGE_MULTIPLE, round(short / EDGE_MULTIPLE) * EDGE_MULTIPLE)
        width, height = (long_px, short_px) if landscape else (short_px, long_px)
        problems = size_problems(width, height)
        if not problems:
            return width, height
        # Nudge towards the limit that was broken, keeping the shape.
        grow = width * height < MIN_PIXELS
        factor = 1.02 if grow else 0.98
        long_edge, short = long_edge * factor, short * factor
    return 1024, 1024


def rules_for_browser() -> dict:
    """The size, prompt, upload and mask rules as JSON-serialisable data for client checks."""
    return {
        "size": {
            "edge_multiple": EDGE_MULTIPLE,
            "max_edge": MAX_EDGE,
            "max_aspect_ratio": MAX_ASPECT_RATIO,
            "min_pixels": MIN_PIXELS,
            "max_pixels": MAX_PIXELS,
            "presets": [size for size, _label in SIZE_PRESETS],
        },
        "max_prompt_chars": MAX_PROMPT_CHARS,
        "qualities": list(QUALITIES),
        "output_formats": list(OUTPUT_FORMATS),
        "backgrounds": list(BACKGROUNDS),
        "transparent_formats": list(TRANSPARENT_FORMATS),
        "setting_messages": SETTING_MESSAGES,
        "input": {
            "max_images": MAX_INPUT_IMAGES,
            "max_bytes": MAX_INPUT_BYTES,
            "max_pixels": MAX_INPUT_PIXELS,
            "formats": list(ALLOWED_INPUT_FORMATS),
            "mime_types": list(INPUT_MIME_TYPES),
        },
        "mask": {
            "max_bytes": MAX_MASK_BYTES,
            "format": MASK_FORMAT,
            "mime_type": MIME_BY_FORMAT[MASK_FORMAT],
            "needs_alpha": True,
            "same_size_as_first_image": True,
        },
        "messages": UPLOAD_MESSAGES,
    }


MEGABYTE = 1024 * 1024


def megabytes(size: int, decimals: int = 1) -> str:
    """Bytes as MB, rounded half up in whole numbers (so static/js/imagecheck.js, which does
    the same, shows the same figure), trailing zeros dropped: 4 MB, 4.5 MB, 4.002 MB."""
    scaled = (size * 10**decimals * 2 + MEGABYTE) // (2 * MEGABYTE)
    whole, fraction = divmod(scaled, 10**decimals)
    digits = f"{fraction:0{decimals}d}".rstrip("0") if decimals else ""
    return f"{whole}.{digits} MB" if digits else f"{whole} MB"


def sizes_apart(limit: int, size: int) -> tuple[str, str]:
    """The limit and a size over it, with as many decimals as it takes to tell them apart
    (a 4.002 MB file is not "4 MB"), in bytes when even three decimals do not."""
    for decimals in (1, 2, 3):
        shown = megabytes(limit, decimals), megabytes(size, decimals)
        if shown[0] != shown[1]:
            return shown
    return f"{limit:,} bytes", f"{size:,} bytes"


QUOTED_PATTERN = re.compile(r'"([^"]+)"|“([^”]+)”')


def quoted_labels(text: str) -> list[str]:
    """The strings a prompt quotes ("..." or “...”), in order, whitespace collapsed: the text
    that must appear in the image. The sandbox draws exactly these; the studio expects them."""
    labels = []
    for match in QUOTED_PATTERN.finditer(text):
        label = " ".join((match.group(1) or match.group(2)).split())
        if label:
            labels.append(label)
    return labels


MAX_EXPECTED_LABELS = 30
MAX_LABEL_CHARS = 500


def expected_labels(prompt: str, *more: Iterable[str]) -> list[str]:
    """THE expected-label rule, for every route to an image: each string the prompt quotes,
    then the labels given besides (a frame's text slots, text the designer added to check),
    whitespace collapsed, each once, in order. The sandbox draws the quoted ones; review
    inspects them all before anyone may approve."""
    labels: list[str] = []
    for label in [*quoted_labels(prompt), *(label for group in more for label in group)]:
        label = " ".join(str(label).split())
        if label and label not in labels:
            labels.append(label)
    return labels


def label_lines(text: str) -> list[str]:
    """Labels typed one a line (the "also check" fields), whitespace collapsed."""
    return [" ".join(line.split()) for line in (text or "").splitlines() if line.strip()]


def label_problems(labels: list[str]) -> list[str]:
    problems = []
    if len(labels) > MAX_EXPECTED_LABELS:
        problems.append(f"At most {MAX_EXPECTED_LABELS} labels can be checked in one image.")
    for label in labels:
        if len(label) > MAX_LABEL_CHARS:
            problems.append(
                f"A label may be at most {MAX_LABEL_CHARS} characters; “{label[:40]}…” is "
                f"{len(label):,}."
            )
    return problems
