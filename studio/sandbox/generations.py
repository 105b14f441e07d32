"""Answer a checked image request (generation or edit): the ImagesResponse body or an SSE
stream of partial and completed images, and any misbehaviour asked for."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator

from django.http import HttpResponse, JsonResponse
from PIL import Image

from studio import pricing
from studio.sandbox import responses, streaming
from studio.sandbox.directives import Directives, strip_directives
from studio.sandbox.params import ImageRequest
from studio.sandbox.render import Picture, draw_picture, encode, labels_to_draw, partial_versions

# The published ImagesResponse schema enumerates only these sizes, so others are left out.
SCHEMA_SIZES = ("1024x1024", "1024x1536", "1536x1024")
GENERATION_EVENTS = "image_generation"
EDIT_EVENTS = "image_edit"

# Draws image number `index` (0-based) of a request, as RGB pixels.
Drawing = Callable[[int], Image.Image]


def misbehaviour_response(directives: Directives, request_id: str) -> JsonResponse | None:
    """Wait and fail as the prompt's directives ask; None when the request should succeed."""
    if directives.timeout:
        directives.budget.wait_out()
        return responses.timeout_response()
    if directives.latency_seconds:
        directives.budget.wait(directives.latency_seconds)
    if directives.error_status is not None:
        return responses.simulated_error_response(directives.error_status)
    if directives.refuse:
        return responses.refusal_response(request_id)
    return None


def answer(
    image_request: ImageRequest,
    directives: Directives,
    draw: Drawing,
    *,
    events: str = GENERATION_EVENTS,
    input_image_tokens: int = 0,
) -> HttpResponse:
    """The ImagesResponse JSON, or an event stream when the request asked for one."""
    if image_request.stream:
        return streaming.event_stream_response(
            image_events(
                image_request,
                directives,
                draw,
                events=events,
                input_image_tokens=input_image_tokens,
            )
        )
    return JsonResponse(
        images_response(image_request, directives, draw, input_image_tokens=input_image_tokens)
    )


def images_response(
    image_request: ImageRequest,
    directives: Directives,
    draw: Drawing | None = None,
    *,
    input_image_tokens: int = 0,
) -> dict:
    """The ImagesResponse body for a request that succeeds."""
    draw = draw or draw_generation(image_request, directives)
    body = {
        "created": int(time.time()),
        "data": [
            {"b64_json": encode_b64(encode_image(image_request, draw(index)), directives)}
            for index in range(image_request.n)
        ],
        "background": "opaque",
        "output_format": image_request.output_format,
        "quality": image_request.resolved_quality,
        "usage": usage(image_request, input_image_tokens=input_image_tokens),
    }
    if image_request.size in SCHEMA_SIZES:
        body["size"] = image_request.size
    return body


def image_events(
    image_request: ImageRequest,
    directives: Directives,
    draw: Drawing,
    *,
    events: str = GENERATION_EVENTS,
    input_image_tokens: int = 0,
) -> Iterator[bytes]:
    """`<events>.partial_image` for each partial, then `<events>.completed`, per image.

    With n > 1 each image streams in turn (partial indexes restart at 0) and each completed
    event carries that image's usage; the prompt's input tokens are counted on the first
    one, so the completed events add up to the usage of the whole request.
    """
    pacer = streaming.Pacer(directives)
    settings_used = {
        # The SDK reads size as any WIDTHxHEIGHT; the published schema lists only three.
        "size": image_request.size,
        "quality": image_request.resolved_quality,
        "background": "opaque",
        "output_format": image_request.output_format,
    }
    for index in range(image_request.n):
        final = draw(index)
        for number, preview in enumerate(partial_versions(final, image_request.partial_images)):
            pacer.wait()
            yield streaming.sse(
                f"{events}.partial_image",
                {
                    "type": f"{events}.partial_image",
                    "b64_json": encode_b64(encode_image(image_request, preview)),
                    "created_at": int(time.time()),
                    **settings_used,
                    "partial_image_index": number,
                },
            )
            if directives.stream_error:
                break
        if directives.stream_error:
            pacer.wait()
            yield streaming.sse("error", streaming.stream_error_data())
            return
        pacer.wait()
        image_usage = usage(
            image_request,
            n=1,
            input_image_tokens=input_image_tokens if index == 0 else 0,
            partial_images=image_request.partial_images,
            count_prompt=index == 0,
        )
        yield streaming.sse(
            f"{events}.completed",
            {
                "type": f"{events}.completed",
                "b64_json": encode_b64(encode_image(image_request, final), directives),
                "created_at": int(time.time()),
                **settings_used,
                "usage": image_usage,
            },
        )


def draw_generation(image_request: ImageRequest, directives: Directives) -> Drawing:
    text = strip_directives(image_request.prompt)
    labels = tuple(labels_to_draw(text, typo=directives.typo))

    def draw(index: int) -> Image.Image:
        return draw_picture(picture_for(image_request, text, labels, index))

    return draw


def picture_for(
    image_request: ImageRequest, text: str, labels: tuple[str, ...], index: int
) -> Picture:
    return Picture(
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


def encode_image(image_request: ImageRequest, image: Image.Image) -> bytes:
    return encode(image, image_request.output_format, image_request.output_compression)


def usage(
    image_request: ImageRequest,
    *,
    n: int | None = None,
    input_image_tokens: int = 0,
    partial_images: int = 0,
    count_prompt: bool = True,
) -> dict:
    """Token usage by the same formula gpt-image-2 bills with and the studio estimates with.

    `partial_images` partial previews of each image add PARTIAL_IMAGE_OUTPUT_TOKENS each.
    """
    n = image_request.n if n is None else n
    text_tokens = pricing.estimate_text_tokens(image_request.prompt) if count_prompt else 0
    image_tokens = n * (
        pricing.estimate_output_tokens(
            image_request.width, image_request.height, image_request.quality
        )
        + partial_images * pricing.PARTIAL_IMAGE_OUTPUT_TOKENS
    )
    input_tokens = text_tokens + input_image_tokens
    return {
        "input_tokens": input_tokens,
        "output_tokens": image_tokens,
        "total_tokens": input_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": input_image_tokens},
        "output_tokens_details": {"image_tokens": image_tokens, "text_tokens": 0},
    }


def encode_b64(image: bytes, directives: Directives | None = None) -> str:
    """Base64 of the image; broken on purpose when the prompt asked for [sandbox:bad-b64]."""
    encoded = base64.b64encode(image).decode("ascii")
    if directives is None or not directives.bad_b64:
        return encoded
    # Lenient decoders skip "!"; a data length one past a multiple of four fails them too.
    data = encoded.rstrip("=")
    data = data[: len(data) - (len(data) - 1) % 4]
    middle = len(data) // 2
    return data[:middle] + "!!!" + data[middle:]
