"""Answer a checked image request: the ImagesResponse body, and any misbehaviour asked for."""

from __future__ import annotations

import base64
import time

from django.conf import settings
from django.http import JsonResponse

from studio import pricing
from studio.sandbox import responses
from studio.sandbox.directives import Directives, strip_directives
from studio.sandbox.params import ImageRequest
from studio.sandbox.render import Picture, labels_to_draw, render_image

# The published ImagesResponse schema enumerates only these sizes, so others are left out.
SCHEMA_SIZES = ("1024x1024", "1024x1536", "1536x1024")


def misbehaviour_response(directives: Directives, request_id: str) -> JsonResponse | None:
    """Wait and fail as the prompt's directives ask; None when the request should succeed."""
    longest = float(settings.SANDBOX_MAX_LATENCY_SECONDS)
    if directives.timeout:
        time.sleep(longest)
        return responses.timeout_response()
    if directives.latency_seconds:
        time.sleep(min(directives.latency_seconds, longest))
    if directives.error_status is not None:
        return responses.simulated_error_response(directives.error_status)
    if directives.refuse:
        return responses.refusal_response(request_id)
    return None


def images_response(image_request: ImageRequest, directives: Directives) -> dict:
    """The ImagesResponse body for a request that succeeds."""
    body = {
        "created": int(time.time()),
        "data": [
            {"b64_json": _encode_b64(image, broken=directives.bad_b64)}
            for image in render_images(image_request, directives)
        ],
        "background": "opaque",
        "output_format": image_request.output_format,
        "quality": image_request.resolved_quality,
        "usage": usage(image_request),
    }
    if image_request.size in SCHEMA_SIZES:
        body["size"] = image_request.size
    return body


def render_images(image_request: ImageRequest, directives: Directives) -> list[bytes]:
    text = strip_directives(image_request.prompt)
    labels = tuple(labels_to_draw(text, typo=directives.typo))
    return [
        render_image(
            Picture(
                text=text,
                labels=labels,
                width=image_request.width,
                height=image_request.height,
                quality=image_request.resolved_quality,
                output_format=image_request.output_format,
                output_compression=image_request.output_compression,
                index=index,
                count=image_request.n,
            )
        )
        for index in range(image_request.n)
    ]


def usage(image_request: ImageRequest) -> dict:
    """Token usage by the same formula gpt-image-2 bills with and the studio estimates with."""
    text_tokens = pricing.estimate_text_tokens(image_request.prompt)
    image_tokens = image_request.n * pricing.estimate_output_tokens(
        image_request.width, image_request.height, image_request.quality
    )
    return {
        "input_tokens": text_tokens,
        "output_tokens": image_tokens,
        "total_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
        "output_tokens_details": {"image_tokens": image_tokens, "text_tokens": 0},
    }


def _encode_b64(image: bytes, *, broken: bool) -> str:
    encoded = base64.b64encode(image).decode("ascii")
    if not broken:
        return encoded
    # Lenient decoders skip "!"; a data length one past a multiple of four fails them too.
    data = encoded.rstrip("=")
    data = data[: len(data) - (len(data) - 1) % 4]
    middle = len(data) // 2
    return data[:middle] + "!!!" + data[middle:]
