"""Open uploaded images and masks the way the Image API accepts them, safely, with Pillow.

Only PNG, JPEG and WebP are ever parsed (`Image.open(..., formats=...)`), sizes are checked
from the header before any pixel is decoded, and everything Pillow can raise on a hostile
file (unknown format, truncated data, a decompression bomb) becomes a 400, never a 500.
The rules themselves live in studio.imagerules, shared with the forms and the browser.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageOps, UnidentifiedImageError

from studio import imagerules
from studio.sandbox.params import InvalidRequest
from studio.uploads import eight_bit

PILLOW_FORMATS = ("PNG", "JPEG", "WEBP")
# A multi-picture JPEG (MPO) is still a JPEG file to a browser and to the API.
FORMAT_NAMES = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}
THUMBNAIL_EDGE = 256
DATA_URL = re.compile(
    r"^data:(image/[a-z0-9.+-]+)?(;[^,]*)?;base64,(.*)$", re.IGNORECASE | re.DOTALL
)
# Everything Pillow raises on a broken or hostile file.
UNREADABLE = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
)


class Upload:
    """One uploaded file: its bytes on disk or in memory, and how many there are."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self.stream = stream
        self.size = size

    @classmethod
    def from_bytes(cls, data: bytes) -> Upload:
        return cls(io.BytesIO(data), len(data))


@dataclass(frozen=True)
class InputImage:
    """A checked input image. The first keeps its pixels (RGB); the others a thumbnail."""

    number: int
    format: str
    width: int
    height: int
    byte_count: int
    pixels: Image.Image


@dataclass(frozen=True)
class Mask:
    """Where to edit: an "L" image the size of the first input, 255 where alpha was 0."""

    editable: Image.Image


def read_input_images(uploads: Sequence[Upload], *, param: str = "image") -> list[InputImage]:
    """Check the count and each file; raise InvalidRequest for the first that breaks a rule."""
    if imagerules.input_count_problems(len(uploads)):
        if not uploads:
            raise InvalidRequest(
                f"Missing required parameter: '{param}'.",
                param=param,
                code="missing_required_parameter",
            )
        raise InvalidRequest(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{imagerules.MAX_INPUT_IMAGES}, but got an array with length {len(uploads)} "
            "instead.",
            param=param,
            code="array_above_max_length",
        )
    return [
        _read_input_image(upload, number, param=param, keep_pixels=number == 1)
        for number, upload in enumerate(uploads, start=1)
    ]


def read_mask(upload: Upload, first: InputImage, *, param: str = "mask") -> Mask:
    """Check a mask against the first input image and turn it into the area to edit."""

    def refuse(problems: list[str]) -> InvalidRequest:
        return InvalidRequest(
            "Invalid mask image: " + " ".join(problems), param=param, code="invalid_image_mask"
        )

    def header_problems(mask_format: str | None, width: int, height: int, alpha: bool) -> list[str]:
        return imagerules.mask_problems(
            width, height, mask_format, alpha, upload.size, first.width, first.height
        )

    if problems := header_problems("png", first.width, first.height, True):
        raise refuse(problems)  # too many bytes: not worth opening
    try:
        image = _open(upload)
    except UNREADABLE:
        raise refuse(header_problems(None, 0, 0, False)) from None
    with image:
        mask_format = FORMAT_NAMES.get(image.format or "")
        problems = header_problems(mask_format, image.width, image.height, _has_alpha(image))
        if problems:
            raise refuse(problems)
        try:
            image.load()
            alpha = image.convert("RGBA").getchannel("A")
        except UNREADABLE:
            raise refuse(header_problems(None, 0, 0, False)) from None
    # Only fully transparent pixels are editable, as the API documents.
    return Mask(editable=alpha.point([255] + [0] * 255))


def check_mime_type(content_type: str | None, *, param: str) -> None:
    """The API refuses a file part whose declared type is not an image type it takes, before
    looking at the bytes (an SDK given bare bytes sends application/octet-stream)."""
    if content_type not in imagerules.INPUT_MIME_TYPES:
        supported = ", ".join(f"'{mime}'" for mime in sorted(imagerules.INPUT_MIME_TYPES))
        raise InvalidRequest(
            f"Invalid file '{param}': unsupported mimetype ('{content_type}'). Supported file "
            f"formats are {supported}.",
            param=param,
            code="unsupported_file_mimetype",
        )


def upload_from_data_url(url: object, *, param: str) -> Upload:
    """An image sent inline as `data:image/png;base64,...` (the sandbox fetches no URLs)."""
    match = DATA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise InvalidRequest(
            f"Invalid '{param}': the sandbox only accepts images sent inline as base64 data "
            "URLs (data:image/png;base64,...); it cannot fetch URLs or files.",
            param=param,
            code="invalid_image_url",
        )
    try:
        data = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"Invalid '{param}': the data URL does not hold valid base64.",
            param=param,
            code="invalid_image_url",
        ) from None
    return Upload.from_bytes(data)


def _read_input_image(upload: Upload, number: int, *, param: str, keep_pixels: bool) -> InputImage:
    def refuse(problems: list[str]) -> InvalidRequest:
        return InvalidRequest(
            f"Invalid image {number}: " + " ".join(problems),
            param=param,
            code="invalid_image_file",
            error_type="image_generation_user_error",
        )

    if problems := imagerules.input_image_problems("png", upload.size):
        raise refuse(problems)  # too many bytes: not worth opening
    unreadable = InvalidRequest(
        f"Invalid image file or mode for image {number}, please check your image file.",
        param=param,
        code="invalid_image_file",
        error_type="image_generation_user_error",
    )
    try:
        image = _open(upload)
    except Image.DecompressionBombError:
        raise refuse(
            [f"It has more pixels than the {imagerules.MAX_INPUT_PIXELS:,} an input may have."]
        ) from None
    except UNREADABLE:
        raise unreadable from None
    with image:
        image_format = FORMAT_NAMES.get(image.format or "")
        width, height = image.size
        if problems := imagerules.input_image_problems(image_format, upload.size, width, height):
            raise refuse(problems)
        try:
            image.load()
            oriented = ImageOps.exif_transpose(image)
            pixels = _flatten(oriented)
        except UNREADABLE:
            raise unreadable from None
    width, height = pixels.size  # after orientation
    if not keep_pixels:
        pixels.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE))
    return InputImage(
        number=number,
        format=image_format or "",
        width=width,
        height=height,
        byte_count=upload.size,
        pixels=pixels,
    )


def _open(upload: Upload) -> Image.Image:
    upload.stream.seek(0)
    return Image.open(upload.stream, formats=PILLOW_FORMATS)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _flatten(image: Image.Image) -> Image.Image:
    """RGB pixels; transparent areas of an input are laid on white, as a viewer shows them.
    Any other mode (16-bit grey, CMYK ...) goes through the studio's own tone-keeping
    conversion first, so the sandbox sees what the studio checked."""
    if image.mode == "RGB":
        return image
    image = eight_bit(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
