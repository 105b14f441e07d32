"""Draw the sandbox's stand-in images: the prompt's quoted labels, large and legible.

Everything drawn follows from the prompt, size, quality, format and image index (and, for
edits, the input pixels and mask), so the same request always gives the same bytes; OCR in
the review flow then has real text to read.

An edit starts from the first input image fitted to the output size (`fit_to_size`: centre
crop to the output's aspect ratio, then Lanczos; no resampling at all when the sizes match)
and changes only the mask's transparent area, so a drift check finds nothing outside it.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont, ImageOps

from studio.imagerules import quoted_labels

FOOTER_TEXT = "SANDBOX"
INK = (18, 18, 24)
PANEL = (250, 249, 244)
FAINT_INK = (70, 70, 80)
SHAPES_BY_QUALITY = {"low": 3, "medium": 6, "high": 10}

MEASURE_SIZE = 100  # glyph widths scale with font size, so measure once at this size
LINE_SPACING = 1.3
MIN_FONT_PX = 14
# Level 1 keeps a 4K PNG well under a second; the pictures are flat and compress well anyway.
PNG_COMPRESS_LEVEL = 1
WEBP_METHOD = 2
# How far an edit moves pixels toward its tint: inside a mask, and over a whole unmasked image.
MASKED_TINT = 0.45
WHOLE_TINT = 0.3
# The last partial image is the final one at 1/8 of its resolution; each earlier one halves it.
LAST_PARTIAL_SCALE = 8


@dataclass(frozen=True)
class Picture:
    """What one image shows and how it is encoded."""

    text: str
    labels: tuple[str, ...]
    width: int
    height: int
    quality: str
    output_format: str
    output_compression: int = 100
    index: int = 0
    count: int = 1


def misspell(label: str) -> str:
    """The label with its middle letter swapped for another, the same way every time."""
    letters = [i for i, char in enumerate(label) if char.isascii() and char.isalpha()]
    if letters:
        at = letters[len(letters) // 2]
        # ROT13 never maps a letter to itself and keeps its case.
        return label[:at] + _rot13(label[at]) + label[at + 1 :]
    digits = [i for i, char in enumerate(label) if char.isascii() and char.isdigit()]
    if digits:
        at = digits[len(digits) // 2]
        return label[:at] + str((int(label[at]) + 5) % 10) + label[at + 1 :]
    return label + "x"


def labels_to_draw(text: str, *, typo: bool = False) -> list[str]:
    """The lines an image shows for a prompt; with typo, the first one is misspelt."""
    labels = quoted_labels(text)
    if typo and labels:
        labels[0] = misspell(labels[0])
    return labels


@dataclass(frozen=True)
class EditPicture:
    """An edit of `source` (RGB): `editable` is 255 where the mask allowed changes (None: the
    whole image may change); `references` are thumbnails of the other input images."""

    picture: Picture
    source: Image.Image
    editable: Image.Image | None = None
    references: tuple[Image.Image, ...] = field(default=())
    ignore_mask: bool = False


def render_image(picture: Picture) -> bytes:
    """Draw and encode one image."""
    return encode(draw_picture(picture), picture.output_format, picture.output_compression)


def draw_picture(picture: Picture) -> Image.Image:
    """One generated image, as RGB pixels."""
    seed = hashlib.sha256(picture.text.encode()).digest()
    image = _background(picture, seed)
    draw = ImageDraw.Draw(image)
    if picture.labels:
        _draw_labels(draw, list(picture.labels), (0, 0, picture.width, picture.height))
    _draw_corner_text(draw, picture)
    return image


def draw_edit(edit: EditPicture) -> Image.Image:
    """One edited image: the source fitted to the output size, tinted and labelled where the
    mask is transparent, untouched elsewhere; with no mask (or told to ignore it) all over."""
    picture = edit.picture
    size = (picture.width, picture.height)
    base = fit_to_size(edit.source, *size)
    seed = hashlib.sha256(picture.text.encode()).digest()
    hue = int.from_bytes(seed[:2], "big") / 65536 + 0.09 * picture.index
    tint = Image.new("RGB", size, _pastel(hue, 0.6, 0.6))
    if edit.editable is None or edit.ignore_mask:
        edited = Image.blend(base, tint, WHOLE_TINT)
        draw = ImageDraw.Draw(edited)
        _paste_references(edited, edit.references)
        if picture.labels:
            _draw_labels(draw, list(picture.labels), (0, 0, *size))
        _draw_corner_text(draw, picture)
        return edited
    region = fit_to_size(edit.editable, *size, resample=Image.Resampling.NEAREST)
    box = region.getbbox()
    if box is None:
        return base  # the mask has no transparent pixel: nothing may change
    edited = Image.blend(base, tint, MASKED_TINT)
    if picture.labels:
        _draw_labels(ImageDraw.Draw(edited), list(picture.labels), box)
    base.paste(edited, (0, 0), region)
    return base


def fit_to_size(
    image: Image.Image,
    width: int,
    height: int,
    *,
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> Image.Image:
    """The image cropped about its centre to the aspect ratio of width x height, then scaled
    to it; a copy when it already is that size."""
    return ImageOps.fit(image, (width, height), method=resample)


def partial_versions(final: Image.Image, count: int) -> list[Image.Image]:
    """`count` lower-detail previews of the final image, coarsest first, at its full size."""
    previews = []
    for number in range(count):
        scale = LAST_PARTIAL_SCALE * 2 ** (count - 1 - number)
        small = final.resize(
            (max(1, final.width // scale), max(1, final.height // scale)), Image.Resampling.BOX
        )
        previews.append(small.resize(final.size, Image.Resampling.BILINEAR))
    return previews


def _rot13(letter: str) -> str:
    base = ord("a") if letter.islower() else ord("A")
    return chr(base + (ord(letter) - base + 13) % 26)


def _pastel(hue: float, lightness: float, saturation: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hls_to_rgb(hue % 1.0, lightness, saturation)
    return round(red * 255), round(green * 255), round(blue * 255)


def _background(picture: Picture, seed: bytes) -> Image.Image:
    hue = int.from_bytes(seed[:2], "big") / 65536
    top, bottom = _pastel(hue, 0.90, 0.55), _pastel(hue + 0.12, 0.82, 0.50)
    # Colourise a small gradient and scale it up: no per-pixel work at full size.
    gradient = ImageOps.colorize(Image.linear_gradient("L"), black=top, white=bottom)
    image = gradient.resize((picture.width, picture.height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    shapes = random.Random(seed + picture.index.to_bytes(2, "big"))
    short_edge = min(picture.width, picture.height)
    for _ in range(SHAPES_BY_QUALITY.get(picture.quality, SHAPES_BY_QUALITY["high"])):
        x, y = shapes.random() * picture.width, shapes.random() * picture.height
        radius = short_edge * (0.05 + 0.15 * shapes.random())
        colour = _pastel(hue + 0.5 * shapes.random(), 0.76, 0.45)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return image


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Loading takes microseconds; a fresh face per call keeps FreeType state out of shared
    # threads (the server answers requests on several).
    return ImageFont.load_default(size=size)


def _width_per_px(line: str) -> float:
    """How wide the line is for each pixel of font size."""
    return _font(MEASURE_SIZE).getlength(line) / MEASURE_SIZE


def _fitting_size(lines: list[str], box_width: float, box_height: float, largest: float) -> float:
    widest = max(_width_per_px(line) for line in lines)
    by_width = box_width / widest if widest else largest
    by_height = box_height / (len(lines) * LINE_SPACING)
    return min(largest, by_width, by_height)


def _wrap(label: str, size: float, box_width: float) -> list[str]:
    lines: list[str] = []
    for word in label.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and _width_per_px(candidate) * size <= box_width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _layout(labels: list[str], width: int, height: int) -> tuple[int, list[str]]:
    """Font size and lines: one label a line, as large as fits; wrapped only when too long."""
    # A little slack for hinting, which makes glyphs at some sizes slightly wider.
    box_width, box_height = width * 0.86, height * 0.68
    largest = min(width / 10, height / 5)
    smallest = max(MIN_FONT_PX, width / 36)
    lines = labels
    size = _fitting_size(lines, box_width, box_height, largest)
    if size < smallest:
        lines = [line for label in labels for line in _wrap(label, smallest, box_width)]
        size = _fitting_size(lines, box_width, box_height, largest)
    return max(MIN_FONT_PX, int(size)), lines


def _draw_labels(
    draw: ImageDraw.ImageDraw, labels: list[str], box: tuple[float, float, float, float]
) -> None:
    """The labels on a light panel, as large as fits the box, a little above its middle."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    size, lines = _layout(labels, width, height)
    font = _font(size)
    line_height = size * LINE_SPACING
    block_width = max(font.getlength(line) for line in lines)
    block_height = line_height * len(lines)
    centre_x, centre_y = left + width / 2, top + height * 0.46
    padding = size * 0.6
    draw.rounded_rectangle(
        (
            centre_x - block_width / 2 - padding,
            centre_y - block_height / 2 - padding,
            centre_x + block_width / 2 + padding,
            centre_y + block_height / 2 + padding,
        ),
        radius=padding,
        fill=PANEL,
    )
    top = centre_y - block_height / 2
    for number, line in enumerate(lines):
        middle = top + (number + 0.5) * line_height
        draw.text((centre_x, middle), line, font=font, fill=INK, anchor="mm")


def _draw_corner_text(draw: ImageDraw.ImageDraw, picture: Picture) -> None:
    size = max(MIN_FONT_PX, picture.width // 40)
    font = _font(size)
    draw.text(
        (picture.width / 2, picture.height - size),
        FOOTER_TEXT,
        font=font,
        fill=FAINT_INK,
        anchor="ms",
    )
    if picture.count > 1:
        marker = f"{picture.index + 1}/{picture.count}"
        draw.text((picture.width - size, size), marker, font=font, fill=FAINT_INK, anchor="ra")


def _paste_references(image: Image.Image, references: tuple[Image.Image, ...]) -> None:
    """The other input images as a strip of small thumbnails along the bottom-left edge."""
    edge = max(16, min(image.width, image.height) // 8)
    margin = edge // 4
    x = margin
    for reference in references:
        thumbnail = reference.copy()
        thumbnail.thumbnail((edge, edge))
        if x + thumbnail.width > image.width - margin:
            break
        image.paste(thumbnail, (x, image.height - margin - thumbnail.height - edge // 2))
        x += thumbnail.width + margin


def encode(image: Image.Image, output_format: str, compression: int) -> bytes:
    buffer = io.BytesIO()
    if output_format == "jpeg":
        image.save(buffer, "JPEG", quality=compression)
    elif output_format == "webp":
        image.save(buffer, "WEBP", quality=compression, method=WEBP_METHOD)
    else:
        image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()
