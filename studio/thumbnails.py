"""Small WebP copies of outputs for the gallery, made on first view and kept in storage.

A page of the gallery shows twenty images; at 4K a PNG output is several megabytes, so the
grid reads `thumbnails/<output id>.webp` (at most THUMBNAIL_EDGE pixels a side) instead.
Retention deletes the thumbnail with its output's file (studio.tasks.delete_output_file).
"""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

THUMBNAIL_EDGE = 384


def thumbnail_name(output_id) -> str:
    return f"thumbnails/{output_id}.webp"


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """The thumbnail's pixel size for an image of width x height (never enlarged)."""
    scale = min(1.0, THUMBNAIL_EDGE / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def thumbnail_bytes(output) -> bytes:
    """The output's thumbnail, made and stored the first time it is asked for. Raises
    OSError when the output's file cannot be read."""
    name = thumbnail_name(output.pk)
    try:
        with default_storage.open(name, "rb") as handle:
            return handle.read()
    except (FileNotFoundError, OSError):
        pass
    with output.file.open("rb") as handle, Image.open(handle) as image:
        image.draft("RGB", (THUMBNAIL_EDGE, THUMBNAIL_EDGE))  # JPEG decodes at a smaller scale
        image.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE))
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, "WEBP", quality=80, method=4)
    data = buffer.getvalue()
    saved = default_storage.save(name, ContentFile(data))
    if saved != name:  # made at the same moment by another request: keep one copy
        default_storage.delete(saved)
    return data
