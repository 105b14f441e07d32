"""Image files for the edit tests: good ones, and each kind of bad one the rules refuse."""

from __future__ import annotations

import io
import struct
import zlib

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw

SOURCE_SIZE = (1024, 1024)
HOLE = (256, 320, 768, 640)  # the transparent (editable) box of the standard mask


def encoded(image: Image.Image, pillow_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **options)
    return buffer.getvalue()


def source_image(width: int = 1024, height: int = 1024) -> Image.Image:
    """A busy, deterministic picture: edits of it show where pixels changed."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for step in range(0, max(width, height), 64):
        draw.line((step, 0, 0, step), fill=(200, 40, 90), width=9)
        draw.rectangle((step, step // 2, step + 20, step // 2 + 20), fill=(20, 160, 220))
    return image


def source_png(width: int = 1024, height: int = 1024) -> bytes:
    return encoded(source_image(width, height))


def mask_image(width: int = 1024, height: int = 1024, hole: tuple = HOLE) -> Image.Image:
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((hole[0], hole[1], hole[2] - 1, hole[3] - 1), fill=(0, 0, 0, 0))
    return mask


def mask_png(width: int = 1024, height: int = 1024, hole: tuple = HOLE) -> bytes:
    return encoded(mask_image(width, height, hole))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header claims width x height grey pixels (zeros compress to nothing)."""
    rows = zlib.compress(b"\x00" * (width + 1) * 64, 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def padded_png(total_bytes: int, small: bytes | None = None) -> bytes:
    """A valid PNG (the source, or `small`) made `total_bytes` long by a private ancillary
    chunk before IEND."""
    small = small or source_png(1024, 1024)
    end = small.rindex(b"IEND") - 4
    padding = total_bytes - len(small) - 12
    return small[:end] + png_chunk(b"zpAd", b"\x00" * padding) + small[end:]


def truncated_png() -> bytes:
    data = encoded(Image.effect_noise((1024, 1024), 60).convert("RGB"))
    return data[: len(data) // 2]


def png_with_html() -> bytes:
    return source_png() + b"<html><script>alert(document.cookie)</script></html>"


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024"><rect/></svg>'


def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)}
    return encoded(source_image(), "JPEG", exif=exif.tobytes(), quality=90)


def rotated_jpeg() -> bytes:
    """A 1536x1024 JPEG whose EXIF says: turn me 90 degrees (so it shows 1024x1536)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"
    return encoded(source_image(1536, 1024), "JPEG", exif=exif.tobytes(), quality=90)


def png_with_text() -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret project name")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>author</x:xmpmeta>")
    return encoded(source_image(), "PNG", pnginfo=info)


def upload(name: str, data: bytes, content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


# Each file the rules refuse, with the field it goes in and the message it must give.
# The browser test feeds the same files to the page's own checks.
def refused_files() -> list[tuple[str, str, str, bytes, str]]:
    """(case, field, file name, bytes, expected message) for every upload and mask rule."""
    opaque_mask = encoded(Image.new("RGB", SOURCE_SIZE, "white"))
    return [
        ("mask without alpha", "mask", "mask.png", opaque_mask, "must be a PNG with an alpha"),
        (
            "mask of another size",
            "mask",
            "mask.png",
            mask_png(512, 512, (0, 0, 100, 100)),
            "same dimensions as the image (mask 512x512, image 1024x1024)",
        ),
        (
            "mask not PNG",
            "mask",
            "mask.webp",
            encoded(Image.new("RGBA", SOURCE_SIZE), "WEBP"),
            "The mask must be a PNG file (it is WEBP).",
        ),
        (
            "mask of 4.002 MB",
            "mask",
            "mask.png",
            padded_png(round(4.002 * 1024 * 1024), mask_png()),
            "The mask must be smaller than 4 MB (it is 4.002 MB).",
        ),
        (
            "20000x20000 mask bomb",
            "mask",
            "mask.png",
            png_bomb(),
            "The mask has too many pixels (400,000,000): it must be the size of the image, "
            "1024x1024.",
        ),
        (
            "51 MB file",
            "source",
            "huge.png",
            padded_png(51 * 1024 * 1024),
            "must be smaller than 50 MB (this one is 51 MB)",
        ),
        (
            "20000x20000 PNG bomb",
            "source",
            "bomb.png",
            png_bomb(),
            "at most 33,177,600 pixels (this one has 400,000,000)",
        ),
        ("truncated PNG", "source", "cut.png", truncated_png(), "damaged or cut short"),
        (
            "PNG with HTML appended",
            "source",
            "polyglot.png",
            png_with_html(),
            "goes on for 52 bytes after the end of its PNG image",
        ),
        (
            "SVG named .png",
            "source",
            "vector.png",
            SVG,
            "must be a PNG, JPEG or WebP file (this one is not a readable image)",
        ),
        ("JPEG with GPS EXIF", "source", "holiday.jpg", jpeg_with_gps(), "GPS location data"),
    ]
