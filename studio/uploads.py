"""Read the images a designer uploads for an edit, safely, and re-encode what is kept.

Uploaded bytes are outside data: they are checked here, where they enter, and leave as
`CheckedImage` objects the rest of the studio trusts. Pillow opens only PNG, JPEG and WebP;
the pixel count is checked from the header before any pixel is decoded; a decompression
bomb, a truncated or damaged file, bytes after the end of the image (a PNG or WebP that is
also an HTML page, say) and photos that carry GPS coordinates are refused with the message
imagerules gives the browser for the same rule. Every pixel is decoded once (a damaged file
fails there). What is kept carries no trailing bytes, no EXIF, no text chunks and no ICC
profile: when the pixels need no change (8-bit L/LA/RGB/RGBA, upright, no colour profile)
the file's own image data is kept and only its metadata chunks or segments are dropped,
losslessly and at copy speed; otherwise the decoded pixels are oriented, moved to sRGB and
re-encoded with a fast setting.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from studio import imagerules

PILLOW_FORMATS = ("PNG", "JPEG", "WEBP")
FORMAT_NAMES = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95
# zlib level for PNGs that must be re-encoded: level 1 is several times faster than the
# default 6 on photographs for files about a fifth larger.
PNG_COMPRESS_LEVEL = 1
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
        _load(image, image_format)
        if (kept := _without_metadata(data, image, image_format)) is not None:
            return _checked(kept, image, image_format, role, name, data)
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
        _load(image, mask_format)
        plain = mask_format == "png" and image.mode == "RGBA"
        if plain and (kept := _without_metadata(data, image, "png")) is not None:
            return _checked(kept, image, "png", Role.MASK, name, data)
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


def _load(image: Image.Image, image_format: str) -> None:
    """Decode every pixel once: a truncated or damaged file fails here, with a message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except UNREADABLE:
        raise UploadRejected(
            imagerules.upload_message("damaged", format=image_format.upper())
        ) from None


def _decoded(image: Image.Image, image_format: str) -> Image.Image:
    """The loaded pixels oriented, in sRGB, RGB(A) or L."""
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
        clean.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif image_format == "jpeg":
        clean.convert("RGB" if clean.mode != "L" else "L").save(
            buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0
        )
    else:
        clean.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4)
    return _checked(buffer.getvalue(), clean, image_format, role, name, original)


def _checked(
    data: bytes, image: Image.Image, image_format: str, role: str, name: str, original: bytes
) -> CheckedImage:
    if len(data) > imagerules.MAX_INPUT_BYTES:
        raise UploadRejected(imagerules.input_image_problems("png", len(data))[0])
    stored_mode = image.mode if image_format != "jpeg" or image.mode == "L" else "RGB"
    return CheckedImage(
        role=role,
        data=data,
        width=image.width,
        height=image.height,
        format=image_format,
        mode=stored_mode,
        original_name=name[:200],
        original_sha256=hashlib.sha256(original).hexdigest(),
        original_bytes=len(original),
    )


# What a kept file keeps: the chunks (PNG, WebP) or segments (JPEG) that make its pixels.
# PNG: header, palette, image data, end (tRNS images are re-encoded, as before). JPEG: every
# segment but APP1-APP13, APP15 and comments (APP0 JFIF and APP14 Adobe say how to read the
# colours). WebP: the bitstreams and their alpha, with VP8X's metadata flags cleared.
PNG_KEPT_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
PNG_KEPT_TYPES = {(8, 0), (8, 2), (8, 4), (8, 6)}  # (bit depth, colour type): L, RGB, LA, RGBA
JPEG_DROPPED_MARKERS = {*range(0xE1, 0xEE), 0xEF, 0xFE}
JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
WEBP_KEPT_CHUNKS = {b"VP8X", b"VP8 ", b"VP8L", b"ALPH"}
WEBP_ANIMATION, WEBP_METADATA_FLAGS = 0x02, 0x20 | 0x08 | 0x04  # ICC, EXIF, XMP


def _without_metadata(data: bytes, image: Image.Image, image_format: str) -> bytes | None:
    """The upload's own image data with its metadata dropped, when its decoded pixels need no
    change; None when they do (another mode or bit depth, an orientation, a colour profile,
    colour-key transparency, animation) or the file's structure is not the plain kind."""
    if image.mode not in EIGHT_BIT_MODES or image.info.get("icc_profile"):
        return None
    if "transparency" in image.info or getattr(image, "is_animated", False):
        return None
    try:
        if image.getexif().get(0x0112, 1) != 1:
            return None
        if image_format == "png":
            return _png_without_metadata(data)
        if image_format == "jpeg":
            return _jpeg_without_metadata(data)
        return _webp_without_metadata(data)
    except (*UNREADABLE, IndexError):
        return None


def _png_without_metadata(data: bytes) -> bytes | None:
    view = memoryview(data)  # slices of a view copy nothing until the join
    kept = [view[: len(PNG_SIGNATURE)]]
    offset = len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        length, kind = struct.unpack(">I4s", view[offset : offset + 8])
        chunk = view[offset : offset + 12 + length]
        if zlib.crc32(chunk[4:-4]) != struct.unpack(">I", chunk[-4:])[0]:
            return None  # a damaged chunk: the re-encode keeps only what decoded
        if kind == b"IHDR" and (chunk[16], chunk[17]) not in PNG_KEPT_TYPES:
            return None
        if kind in PNG_KEPT_CHUNKS:
            kept.append(chunk)
        offset += 12 + length
        if kind == b"IEND":
            return b"".join(kept)
    return None


def _jpeg_without_metadata(data: bytes) -> bytes | None:
    data = memoryview(data)
    kept = [data[:2]]  # SOI
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in JPEG_STANDALONE:
            kept.append(data[offset : offset + 2])
            offset += 2
            continue
        if marker == 0xDA:  # start of scan: the rest up to the end of image is kept
            end = data.obj.find(b"\xff\xd9", offset)
            if end < 0:
                return None
            kept.append(data[offset : end + 2])
            return b"".join(kept)
        length = struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        if marker not in JPEG_DROPPED_MARKERS:
            kept.append(data[offset : offset + 2 + length])
        offset += 2 + length
    return None


def _webp_without_metadata(data: bytes) -> bytes | None:
    kept = []
    offset = 12
    end = 8 + struct.unpack("<I", data[4:8])[0]
    while offset + 8 <= end:
        kind, length = struct.unpack("<4sI", data[offset : offset + 8])
        chunk = bytearray(data[offset : offset + 8 + length + (length & 1)])
        if kind == b"VP8X":
            if chunk[8] & WEBP_ANIMATION:
                return None
            chunk[8] &= ~WEBP_METADATA_FLAGS & 0xFF
        if kind in WEBP_KEPT_CHUNKS:
            kept.append(bytes(chunk))
        offset += len(chunk)
    body = b"WEBP" + b"".join(kept)
    return b"RIFF" + struct.pack("<I", len(body)) + body


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
