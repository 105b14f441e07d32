"""Image API streams from the sandbox: partial images, the completed image, errors mid-stream.

The real openai SDK parses the server-sent events into its typed events; the raw stream is
read too, to check the SSE framing and validate each event against the published schema.
"""

from __future__ import annotations

import json
import time

import openai
import pytest
from openai import OpenAI
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
)
from PIL import Image, ImageChops, ImageDraw

from studio import pricing
from studio.sandbox.edits import input_image_tokens
from tests.openapi import assert_matches_schema
from tests.sandbox_helpers import decode, png_bytes

pytestmark = pytest.mark.django_db(transaction=True)

FAST = " [sandbox:pace=0]"
PROMPT = 'A shop window that says "Grand Opening"'
EVENT_SCHEMAS = {
    "image_generation.partial_image": "ImageGenPartialImageEvent",
    "image_generation.completed": "ImageGenCompletedEvent",
    "image_edit.partial_image": "ImageEditPartialImageEvent",
    "image_edit.completed": "ImageEditCompletedEvent",
}


@pytest.fixture
def client(live_server) -> OpenAI:
    return OpenAI(base_url=live_server.url + "/sandbox/v1", api_key="sandbox", max_retries=0)


def raw_events(response) -> list[tuple[str, dict]]:
    """(event name, data) for every event of a raw SSE body."""
    events = []
    for block in response.read().decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(lines) == {"event", "data"}, block[:200]
        events.append((lines["event"], json.loads(lines["data"])))
    return events


SOURCE = Image.linear_gradient("L").resize((1024, 1024)).convert("RGB")
SOURCE_PNG = png_bytes(SOURCE)
MASK = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
ImageDraw.Draw(MASK).rectangle((100, 100, 499, 499), fill=(0, 0, 0, 0))
MASK_PNG = png_bytes(MASK)


def test_it_streams_partial_images_then_the_completed_image(client):
    stream = client.images.generate(
        model="gpt-image-2", prompt=PROMPT + FAST, stream=True, partial_images=2, quality="low"
    )
    events = list(stream)

    assert [type(event) for event in events] == [
        ImageGenPartialImageEvent,
        ImageGenPartialImageEvent,
        ImageGenCompletedEvent,
    ]
    assert [event.partial_image_index for event in events[:2]] == [0, 1]
    final = decode(events[-1].b64_json)
    partials = [decode(event.b64_json) for event in events[:2]]
    assert all((p.format, p.size) == (final.format, final.size) for p in partials)
    assert (final.format, final.size) == ("PNG", (1024, 1024))
    # Each partial is a coarser version of the final image, the first the coarsest.
    assert partials[0].tobytes() != partials[1].tobytes() != final.tobytes()
    assert all(event.size == "1024x1024" and event.quality == "low" for event in events)
    assert all(event.output_format == "png" and event.background == "opaque" for event in events)


def test_the_completed_usage_counts_the_partial_images(client):
    events = list(
        client.images.generate(
            model="gpt-image-2", prompt=PROMPT + FAST, stream=True, partial_images=3, quality="low"
        )
    )

    usage = events[-1].usage
    image_tokens = pricing.estimate_output_tokens(1024, 1024, "low")
    partial_tokens = 3 * pricing.PARTIAL_IMAGE_OUTPUT_TOKENS
    assert len(events) == 4
    assert usage.output_tokens == image_tokens + partial_tokens == image_tokens + 300
    assert usage.input_tokens == pricing.estimate_text_tokens(PROMPT + FAST)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_the_streamed_image_is_the_one_the_json_answer_gives(client):
    params = {"model": "gpt-image-2", "prompt": PROMPT + FAST, "quality": "low"}
    streamed = list(client.images.generate(**params, stream=True, partial_images=1))
    answered = client.images.generate(**params)

    assert streamed[-1].b64_json == answered.data[0].b64_json


def test_without_partial_images_one_event_carries_the_image(client):
    events = list(client.images.generate(model="gpt-image-2", prompt=PROMPT, stream=True))

    assert [event.type for event in events] == ["image_generation.completed"]
    assert events[0].usage.output_tokens == pricing.estimate_output_tokens(1024, 1024, "high")


def test_the_raw_stream_is_server_sent_events_matching_the_schema(client):
    raw = client.images.with_raw_response.generate(
        model="gpt-image-2",
        prompt=PROMPT + FAST,
        stream=True,
        partial_images=2,
        size="1536x1024",
        quality="medium",
        output_format="webp",
        output_compression=60,
    )

    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-request-id"].startswith("req_")
    events = raw_events(raw.http_response)
    assert [name for name, _ in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    for name, data in events:
        assert data["type"] == name
        assert abs(data["created_at"] - time.time()) < 60
        assert decode(data["b64_json"]).format == "WEBP"
        assert_matches_schema(data, EVENT_SCHEMAS[name])


def test_a_custom_size_is_reported_as_the_sdk_reads_it(client):
    events = list(
        client.images.generate(
            model="gpt-image-2", prompt="x" + FAST, stream=True, size="1536x864", quality="low"
        )
    )

    # The published schema enumerates three sizes; the SDK (ahead of it) takes any WxH.
    assert events[-1].size == "1536x864"
    assert decode(events[-1].b64_json).size == (1536, 864)


def test_each_of_n_images_streams_in_turn(client):
    events = list(
        client.images.generate(
            model="gpt-image-2", prompt=PROMPT + FAST, stream=True, n=2, partial_images=1
        )
    )

    assert [event.type.split(".")[1] for event in events] == [
        "partial_image",
        "completed",
        "partial_image",
        "completed",
    ]
    assert events[1].b64_json != events[3].b64_json
    usages = [events[1].usage, events[3].usage]
    per_image = pricing.estimate_output_tokens(1024, 1024, "high") + 100
    assert [usage.output_tokens for usage in usages] == [per_image, per_image]
    # The prompt is counted once, so the completed events add up to the request.
    assert sum(usage.input_tokens for usage in usages) == pricing.estimate_text_tokens(
        PROMPT + FAST
    )


def test_it_streams_an_edit_with_image_edit_events(client):
    stream = client.images.edit(
        model="gpt-image-2",
        image=("room.png", SOURCE_PNG, "image/png"),
        mask=("mask.png", MASK_PNG, "image/png"),
        prompt=PROMPT + FAST,
        stream=True,
        partial_images=2,
        quality="low",
    )
    events = list(stream)

    assert [type(event) for event in events] == [
        ImageEditPartialImageEvent,
        ImageEditPartialImageEvent,
        ImageEditCompletedEvent,
    ]
    final = decode(events[-1].b64_json).convert("RGB")
    outside = Image.new("RGB", (1024, 1024))
    outside.paste(final)
    ImageDraw.Draw(outside).rectangle((100, 100, 499, 499), fill=0)
    source_outside = SOURCE.copy()
    ImageDraw.Draw(source_outside).rectangle((100, 100, 499, 499), fill=0)
    assert ImageChops.difference(outside, source_outside).getbbox() is None
    usage = events[-1].usage
    assert usage.input_tokens_details.image_tokens == input_image_tokens(1024, 1024)
    assert usage.output_tokens == pricing.estimate_output_tokens(1024, 1024, "low") + 200


def test_the_raw_edit_stream_matches_the_schema(client):
    raw = client.images.with_raw_response.edit(
        model="gpt-image-2",
        image=("room.png", SOURCE_PNG, "image/png"),
        prompt=PROMPT + FAST,
        stream=True,
        partial_images=1,
        quality="low",
    )

    events = raw_events(raw.http_response)
    assert [name for name, _ in events] == ["image_edit.partial_image", "image_edit.completed"]
    for name, data in events:
        assert_matches_schema(data, EVENT_SCHEMAS[name])


def test_an_error_mid_stream_follows_one_partial_and_ends_it(client):
    stream = client.images.generate(
        model="gpt-image-2",
        prompt=PROMPT + FAST + " [sandbox:stream-error]",
        stream=True,
        partial_images=3,
    )
    received = []
    with pytest.raises(openai.APIError) as failure:
        for event in stream:
            received.append(event)

    assert [event.type for event in received] == ["image_generation.partial_image"]
    assert not isinstance(failure.value, openai.APIStatusError)
    assert failure.value.message == "The server had an error while processing your request."
    assert failure.value.type == "server_error"


def test_the_raw_error_event_has_openais_error_shape(client):
    raw = client.images.with_raw_response.edit(
        model="gpt-image-2",
        image=("room.png", SOURCE_PNG, "image/png"),
        prompt=PROMPT + FAST + " [sandbox:stream-error]",
        stream=True,
        partial_images=2,
    )

    events = raw_events(raw.http_response)
    assert [name for name, _ in events] == ["image_edit.partial_image", "error"]
    error = events[1][1]
    assert_matches_schema(error, "Error")
    assert_matches_schema(error, "ErrorResponse")
    assert error["error"]["type"] == "server_error"


def test_failures_before_the_stream_are_plain_error_responses(client):
    with pytest.raises(openai.RateLimitError):
        client.images.generate(
            model="gpt-image-2", prompt="x [sandbox:error=429]", stream=True, partial_images=1
        )
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.generate(model="gpt-image-2", prompt="x", stream=True, partial_images=4)

    assert refusal.value.param == "partial_images"


def test_it_paces_the_events_as_told(client):
    started = time.monotonic()
    arrivals = []
    for _ in client.images.generate(
        model="gpt-image-2",
        prompt="x [sandbox:pace=0.3]",
        stream=True,
        partial_images=2,
        quality="low",
    ):
        arrivals.append(time.monotonic() - started)

    assert len(arrivals) == 3
    assert arrivals[-1] - arrivals[0] >= 0.55
    assert arrivals[0] < 0.5  # the first event is not held back


def test_the_default_pace_is_small_and_capped_by_the_latency_setting(client, settings):
    settings.SANDBOX_MAX_LATENCY_SECONDS = 0
    started = time.monotonic()
    events = list(
        client.images.generate(
            model="gpt-image-2", prompt="x [sandbox:pace=60]", stream=True, partial_images=3
        )
    )

    assert len(events) == 4
    assert time.monotonic() - started < 5
