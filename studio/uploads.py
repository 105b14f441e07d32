"""Read the images a designer uploads for an edit, safely, and re-encode what is kept.

Uploaded bytes are outside data: they are checked here, where they enter, and leave as
`CheckedImage` objects the rest of the studio trusts. Pillow opens only PNG, JPEG and WebP;
the pixel count is checked from the header before any pixel is decoded; a decompression
bomb, a truncated or damaged file, bytes after the end of the image (a PNG or WebP that is
also an HTML page, say) and photos that carry GPS coordinates are refused with the message
imagerules gives the browser for the same rule. What is kept is re-encoded from the decoded
pixels, with the EXIF orientation applied first and colours moved to sRGB: no trailing bytes,
no EXIF, no text chunks, no ICC profile.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from studio import imagerules

PILLOW_FORMATS = ("PNG", "JPEG", "WEBP")
FORMAT_NAMES = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95
GPS_IFD = 0x8825
GPS_POSITION_TAGS = (2, 4)  # GPSLatitude, GPSLongitude
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
# Everything Pillow raises on a broken or hostile file.
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error)


class Role:
    SOURCE = "source"
    REFERENCE = "reference"
    MASK = "mask"


class UploadRejected(Exception):
    """A file that breaks an upload rule; the message is shown next to the field."""


class TooManyPixels(UploadRejected):
    """A header that declares more pixels than the studio decodes (a decompression bomb)."""

    def __init__(self, pixels: int) -> None:
        super().__init__(imagerules.pixel_problem(pixels))
        self.pixels = pixels


@dataclass(frozen=True)
class CheckedImage:
    """An input image as the studio keeps it: re-encoded bytes and what they hold."""

    role: str
    data: bytes
    width: int
    height: int
    format: str  # png, jpeg or webp: the format of `data`
    mode: str  # the Pillow mode of `data`: RGB, RGBA or L
    original_name: str
    original_sha256: str
    original_bytes: int
    from_output: object | None = None  # the OutputImage it was taken from, if any

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def mime_type(self) -> str:
        return imagerules.MIME_BY_FORMAT[self.format]

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("RGBA", "LA")

    def pixels(self) -> Image.Image:
        image = open_header(self.data, PILLOW_FORMATS)
        image.load()
        return image


def read_input_image(stream: IO[bytes], size: int, name: str, role: str) -> CheckedImage:
    """Check one source or reference image and re-encode it in its own format."""
    if size > imagerules.MAX_INPUT_BYTES:
        raise UploadRejected(imagerules.input_image_problems("png", size)[0])  # never opened
    data = _read_all(stream)
    image, image_format = _open(data, name)
    with image:
        if problems := imagerules.input_image_problems(image_format, size, *image.size):
            raise UploadRejected(problems[0])
        _refuse_trailing_data(data, image_format)
        _refuse_gps(image)
        clean = _decoded(image, image_format)
    return _reencoded(clean, image_format, role, name, data)


def read_mask(stream: IO[bytes], size: int, name: str, source: CheckedImage) -> CheckedImage:
    """Check a mask against the (checked) source image and re-encode it as an RGBA PNG."""

    def problems(mask_format: str | None, width: int, height: int, alpha: bool) -> list[str]:
        return imagerules.mask_problems(
            width, height, mask_format, alpha, size, source.width, source.height
        )

    if too_big := problems("png", source.width, source.height, True):
        raise UploadRejected(too_big[0])  # never opened
    data = _read_all(stream)
    try:
        image, mask_format = _open(data, name)
    except TooManyPixels as bomb:
        raise UploadRejected(
            imagerules.mask_pixel_problem(bomb.pixels, source.width, source.height)
        ) from None
    except UploadRejected:
        raise UploadRejected(problems(None, 0, 0, False)[0]) from None
    with image:
        pixels = image.width * image.height
        if pixels > imagerules.MAX_INPUT_PIXELS:
            raise UploadRejected(imagerules.mask_pixel_problem(pixels, source.width, source.height))
        # No pixel is decoded for a mask of another size; reading a PNG's EXIF (for its
        # orientation) decodes the whole image, so it comes after that check.
        dimensions = image.size
        if sorted(dimensions) == sorted((source.width, source.height)):
            dimensions = _oriented_size(image, mask_format)
        if broken := problems(mask_format, *dimensions, _has_alpha(image)):
            raise UploadRejected(" ".join(broken))
        _refuse_trailing_data(data, mask_format)
        clean = _decoded(image, mask_format).convert("RGBA")
    return _reencoded(clean, "png", Role.MASK, name, data)


def check_input_count(count: int) -> None:
    if problems := imagerules.input_count_problems(count):
        raise UploadRejected(problems[0])


def _read_all(stream: IO[bytes]) -> bytes:
    stream.seek(0)
    return stream.read()


def _open(data: bytes, name: str) -> tuple[Image.Image, str]:
    """Open the header only; the caller checks the size before load() decodes anything."""
    try:
        image = open_header(data, PILLOW_FORMATS)
    except TooManyPixels:
        raise
    except UploadRejected:
        raise UploadRejected(
            imagerules.upload_message("input_format", shown=_unreadable())
        ) from None
    image_format = FORMAT_NAMES.get(image.format or "")
    if image_format is None:
        image.close()
        raise UploadRejected(imagerules.upload_message("input_format", shown=_unreadable()))
    return image, image_format


def open_header(data: bytes, formats: tuple[str, ...]) -> Image.Image:
    """Read an image's header, no pixel yet: every image the studio is handed goes through
    here (uploads, masks, a reviewer's region), so Pillow's decompression-bomb error and
    whatever it raises on a broken file become an UploadRejected with a message."""
    try:
        with warnings.catch_warnings():
            # Between Pillow's warning and error limits: the caller decides, with a message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as bomb:
        found = BOMB_PIXELS.search(str(bomb))
        raise TooManyPixels(
            int(found.group(1)) if found else imagerules.MAX_INPUT_PIXELS + 1
        ) from None
    except UNREADABLE:
        raise UploadRejected(_unreadable()) from None


def _unreadable() -> str:
    return imagerules.UPLOAD_MESSAGES["unreadable"]


def _decoded(image: Image.Image, image_format: str) -> Image.Image:
    """Every pixel decoded (a truncated file fails here), oriented, in sRGB, RGB(A) or L."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            oriented = ImageOps.exif_transpose(image)
            return _normalised(oriented)
    except UNREADABLE:
        raise UploadRejected(
            imagerules.upload_message("damaged", format=image_format.upper())
        ) from None


def _normalised(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    image = eight_bit(image)
    alpha = image.mode in ("LA", "RGBA")
    if image.mode == "L" and not icc:
        return image.copy()
    mode = "RGBA" if alpha else "RGB"
    if icc:
        try:
            converted = ImageCms.profileToProfile(
                image.convert(mode),
                ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                ImageCms.createProfile("sRGB"),
                outputMode=mode,
            )
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: keep the numbers as they are, as most viewers would
    return image.convert(mode)


# Pillow's convert() clips modes wider than 8 bits at 255: a 16-bit grey ramp would come out
# almost all white. These are scaled into 0-255 first. "I" and "F" carry no scale of their
# own: Pillow's convention is 0-255 (what convert("I") of an "L" image holds), a 16-bit
# source fills 0-65535, and floats from 0-1 are common; the values say which.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
EIGHT_BIT_MODES = ("L", "LA", "RGB", "RGBA")


def eight_bit(image: Image.Image) -> Image.Image:
    """The image as L, LA, RGB or RGBA with its tones kept, from any mode Pillow opens."""
    mode = image.mode
    if mode in EIGHT_BIT_MODES:
        return image
    if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        wide = image.convert("F") if mode != "F" else image
        scale = 1 / 257 if mode in SIXTEEN_BIT_MODES else _tone_scale(wide)
        return wide.point(lambda value: value * scale + 0.5).convert("L")
    if mode == "LAB":
        return ImageCms.profileToProfile(
            image, ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    if mode == "1":
        return image.convert("L")
    if mode == "La":
        return image.convert("LA")
    return image.convert("RGBA" if _has_alpha(image) else "RGB")


def _tone_scale(image: Image.Image) -> float:
    """What to multiply "I" or "F" values by to bring them into 0-255."""
    _, highest = image.getextrema()
    if image.mode == "F" and highest <= 1.0:
        return 255.0
    return 1.0 if highest <= 255 else 1 / 257


def _reencoded(
    image: Image.Image, image_format: str, role: str, name: str, original: bytes
) -> CheckedImage:
    # `image` is already our own copy; without its info dict nothing of the upload but its
    # pixels goes out (Pillow's encoders take ICC profiles and EXIF from there).
    clean = image
    clean.info = {}
    buffer = io.BytesIO()
    if image_format == "png":
        clean.save(buffer, "PNG", compress_level=6)
    elif image_format == "jpeg":
        clean.convert("RGB" if clean.mode != "L" else "L").save(
            buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0
        )
    else:
        clean.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4)
    data = buffer.getvalue()
    if len(data) > imagerules.MAX_INPUT_BYTES:
        raise UploadRejected(imagerules.input_image_problems("png", len(data))[0])
    stored_mode = clean.mode if image_format != "jpeg" or clean.mode == "L" else "RGB"
    return CheckedImage(
        role=role,
        data=data,
        width=clean.width,
        height=clean.height,
        format=image_format,
        mode=stored_mode,
        original_name=name[:200],
        original_sha256=hashlib.sha256(original).hexdigest(),
        original_bytes=len(original),
    )


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _oriented_size(image: Image.Image, image_format: str) -> tuple[int, int]:
    try:
        orientation = image.getexif().get(0x0112, 1)
    except UNREADABLE:
        raise UploadRejected(
            imagerules.upload_message("damaged", format=image_format.upper())
        ) from None
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _refuse_gps(image: Image.Image) -> None:
    try:
        gps = image.getexif().get_ifd(GPS_IFD)
    except UNREADABLE:
        return  # unreadable EXIF is dropped with the rest when the image is re-encoded
    if any(tag in gps for tag in GPS_POSITION_TAGS):
        raise UploadRejected(imagerules.upload_message("gps"))


def _refuse_trailing_data(data: bytes, image_format: str) -> None:
    """PNG and WebP say exactly where they end; anything after that is not the image.
    (JPEG files legitimately carry more after their first image, MPO for one; re-encoding
    leaves it behind.)"""
    if image_format == "png":
        end = _png_end(data)
    elif image_format == "webp":
        riff_size = struct.unpack("<I", data[4:8])[0]
        end = 8 + riff_size + (riff_size & 1)
    else:
        return
    if end is None:
        raise UploadRejected(imagerules.upload_message("damaged", format=image_format.upper()))
    if len(data) > end:
        raise UploadRejected(
            imagerules.upload_message(
                "trailing_data", extra=f"{len(data) - end:,}", format=image_format.upper()
            )
        )


def _png_end(data: bytes) -> int | None:
    """The offset just after the IEND chunk, or None when the chunks run off the end."""
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        offset += 12 + length
        if offset > len(data):
            return None
        if kind == b"IEND":
            return offset
    return None
