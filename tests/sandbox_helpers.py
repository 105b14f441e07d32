"""Small helpers the sandbox tests share: images in and out of the wire formats."""

from __future__ import annotations

import base64
import io

from PIL import Image


def decode(b64_json: str) -> Image.Image:
    """A b64_json image from an answer, strictly decoded and fully loaded."""
    image = Image.open(io.BytesIO(base64.b64decode(b64_json, validate=True)))
    image.load()
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
