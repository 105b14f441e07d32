"""The sandbox's Responses API: a mainline model calling the image_generation tool.

Called with the real openai SDK's `client.responses.create`, plain and streaming.
"""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
from openai import OpenAI
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseImageGenCallPartialImageEvent,
    ResponseTextDeltaEvent,
)
from PIL import Image, ImageChops, ImageDraw, ImageStat

from studio import pricing
from studio.sandbox.edits import input_image_tokens
from tests.openapi import assert_matches_schema
from tests.sandbox_helpers import decode

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "gpt-5.4"
FAST = " [sandbox:pace=0]"
TOOL = {"type": "image_generation", "quality": "low", "size": "1024x1024"}
STREAM_SEQUENCE = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.image_generation_call.in_progress",
    "response.image_generation_call.generating",
    "response.image_generation_call.partial_image",
    "response.image_generation_call.partial_image",
    "response.image_generation_call.completed",
    "response.output_item.done",
    "response.output_item.added",
    "response.content_part.added",
]
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.image_generation_call.in_progress": "ResponseImageGenCallInProgressEvent",
    "response.image_generation_call.generating": "ResponseImageGenCallGeneratingEvent",
    "response.image_generation_call.partial_image": "ResponseImageGenCallPartialImageEvent",
    "response.image_generation_call.completed": "ResponseImageGenCallCompletedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
}


@pytest.fixture
def client(live_server) -> OpenAI:
    return OpenAI(base_url=live_server.url + "/sandbox/v1", api_key="sandbox", max_retries=0)


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    return sum(ImageStat.Stat(difference).mean) / 3


def create_raw(client: OpenAI, **params) -> dict:
    params.setdefault("model", MODEL)
    return json.loads(client.responses.with_raw_response.create(**params).text)


def raw_events(client: OpenAI, **params) -> list[tuple[str, dict]]:
    params.setdefault("model", MODEL)
    raw = client.responses.with_raw_response.create(stream=True, **params)
    events = []
    for block in raw.http_response.read().decode().split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def image_of(response) -> Image.Image:
    (call,) = [item for item in response.output if item.type == "image_generation_call"]
    return decode(call.result)


def test_it_answers_with_an_image_call_and_a_message(client):
    prompt = 'Draw a poster that says "Summer Sale"'
    body = create_raw(client, input=prompt, tools=[TOOL])

    assert_matches_schema(body, "Response")
    assert body["id"].startswith("resp_")
    assert (body["object"], body["status"], body["model"]) == ("response", "completed", MODEL)
    call, message = body["output"]
    assert call["type"] == "image_generation_call"
    assert call["id"].startswith("ig_")
    assert call["status"] == "completed"
    assert (call["size"], call["quality"], call["output_format"]) == ("1024x1024", "low", "png")
    assert call["revised_prompt"] == prompt
    assert decode(call["result"]).size == (1024, 1024)
    assert message["type"] == "message"
    assert message["id"].startswith("msg_")
    assert message["role"] == "assistant"
    assert '"Summer Sale"' in message["content"][0]["text"]


def test_the_sdk_reads_usage_for_the_model_and_for_the_image_tool(client):
    prompt = 'Draw "Hi"'
    response = client.responses.create(model=MODEL, input=prompt, tools=[TOOL])

    usage = response.usage
    assert usage.input_tokens == pricing.estimate_text_tokens(prompt)
    assert usage.output_tokens == pricing.estimate_text_tokens(
        response.output_text
    ) + pricing.estimate_text_tokens(prompt)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    # The image tool's own tokens, billed at gpt-image-2's prices (not in the spec yet).
    image_gen = response.tool_usage.image_gen
    assert image_gen.output_tokens == pricing.estimate_output_tokens(1024, 1024, "low")
    assert image_gen.input_tokens_details.text_tokens == pricing.estimate_text_tokens(prompt)
    assert image_gen.input_tokens_details.image_tokens == 0


def test_without_the_tool_it_only_answers_text(client):
    response = client.responses.create(model=MODEL, input='Say "hello"')

    assert [item.type for item in response.output] == ["message"]
    assert "image_generation tool" in response.output_text
    assert response.tool_usage.image_gen.output_tokens == 0


def test_an_image_model_in_the_model_field_is_refused(client):
    with pytest.raises(openai.BadRequestError) as refusal:
        client.responses.create(model="gpt-image-2", input="Draw a cat", tools=[TOOL])

    assert refusal.value.param == "model"
    assert "image_generation tool" in refusal.value.body["message"]
    assert MODEL in refusal.value.body["message"]
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")


def test_it_streams_the_standard_event_sequence(client):
    events = raw_events(
        client,
        input='Draw "Stream"' + FAST,
        tools=[{**TOOL, "partial_images": 2, "output_format": "jpeg"}],
    )

    names = [name for name, _ in events]
    assert names[: len(STREAM_SEQUENCE)] == STREAM_SEQUENCE
    assert names[len(STREAM_SEQUENCE)] == "response.output_text.delta"
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    for name, data in events:
        assert data["type"] == name
        assert_matches_schema(data, EVENT_SCHEMAS[name])
    partials = [data for name, data in events if name.endswith("partial_image")]
    assert [p["partial_image_index"] for p in partials] == [0, 1]
    assert {p["item_id"] for p in partials} == {events[2][1]["item"]["id"]}
    assert decode(partials[0]["partial_image_b64"]).format == "JPEG"
    deltas = "".join(data["delta"] for name, data in events if name.endswith("text.delta"))
    final = events[-1][1]["response"]
    assert deltas == final["output"][1]["content"][0]["text"]
    assert final["status"] == "completed"
    assert final["tool_usage"]["image_gen"]["output_tokens"] == (
        pricing.estimate_output_tokens(1024, 1024, "low") + 2 * pricing.PARTIAL_IMAGE_OUTPUT_TOKENS
    )


def test_the_sdk_parses_the_stream_into_typed_events(client):
    stream = client.responses.create(
        model=MODEL, input='Draw "Typed"' + FAST, tools=[{**TOOL, "partial_images": 1}], stream=True
    )
    events = list(stream)

    partial = next(e for e in events if isinstance(e, ResponseImageGenCallPartialImageEvent))
    assert decode(partial.partial_image_b64).size == (1024, 1024)
    assert partial.partial_image_index == 0
    assert any(isinstance(event, ResponseTextDeltaEvent) for event in events)
    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    assert image_of(completed.response).size == (1024, 1024)
    assert completed.response.output_text.startswith("Here is the image")


def test_a_follow_up_turn_edits_the_previous_image(client):
    first = client.responses.create(model=MODEL, input='Draw "First"', tools=[TOOL])
    second = client.responses.create(
        model=MODEL,
        input='Now add "Second"',
        tools=[TOOL],
        previous_response_id=first.id,
    )
    fresh = client.responses.create(model=MODEL, input='Now add "Second"', tools=[TOOL])

    first_image, second_image = image_of(first), image_of(second)
    assert second.output[0].action == "edit"
    assert fresh.output[0].action == "generate"
    assert second.previous_response_id == first.id
    # Derived from the first image: far closer to it than a fresh image of the same prompt.
    assert mean_difference(second_image, first_image) < 40
    assert mean_difference(second_image, first_image) < mean_difference(
        image_of(fresh), first_image
    )
    # The conversation so far is read again as input.
    assert second.usage.input_tokens > first.usage.total_tokens
    assert second.tool_usage.image_gen.input_tokens_details.image_tokens == input_image_tokens(
        1024, 1024
    )


def test_an_unknown_previous_response_is_refused(client):
    with pytest.raises(openai.BadRequestError) as refusal:
        client.responses.create(
            model=MODEL, input="x", tools=[TOOL], previous_response_id="resp_missing"
        )

    assert refusal.value.param == "previous_response_id"
    assert refusal.value.body["message"] == "Previous response with id 'resp_missing' not found."


def test_it_edits_an_input_image_within_the_tools_mask(client):
    source = Image.linear_gradient("L").resize((1536, 1024)).convert("RGB")
    mask = Image.new("RGBA", source.size, (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((0, 0, 767, 511), fill=(0, 0, 0, 0))
    response = client.responses.create(
        model=MODEL,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": 'Label the corner "Corner"'},
                    {"type": "input_image", "image_url": data_url(source), "detail": "auto"},
                ],
            }
        ],
        tools=[
            {
                "type": "image_generation",
                "quality": "low",
                "input_image_mask": {"image_url": data_url(mask)},
            }
        ],
    )

    edited = image_of(response).convert("RGB")
    assert edited.size == (1536, 1024)  # "auto" is the input image's size
    assert (
        ImageChops.difference(
            edited.crop((768, 0, 1536, 1024)), source.crop((768, 0, 1536, 1024))
        ).getbbox()
        is None
    )
    assert edited.crop((0, 0, 768, 512)).tobytes() != source.crop((0, 0, 768, 512)).tobytes()
    assert response.usage.input_tokens > input_image_tokens(1536, 1024)


def test_directives_work_in_responses(client):
    with pytest.raises(openai.BadRequestError) as refusal:
        client.responses.create(model=MODEL, input="x [sandbox:refuse]", tools=[TOOL])
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model=MODEL, input="x [sandbox:error=503]", tools=[TOOL])
    plain = client.responses.create(model=MODEL, input='"Hello"', tools=[TOOL])
    typo = client.responses.create(model=MODEL, input='"Hello" [sandbox:typo]', tools=[TOOL])

    assert refusal.value.code == "moderation_blocked"
    assert typo.output[0].result != plain.output[0].result


def test_an_error_mid_stream_sends_error_and_failed(client):
    events = raw_events(
        client,
        input='"Oops"' + FAST + " [sandbox:stream-error]",
        tools=[{**TOOL, "partial_images": 2}],
    )

    names = [name for name, _ in events]
    assert names[-4:] == [
        "response.image_generation_call.generating",
        "response.image_generation_call.partial_image",
        "error",
        "response.failed",
    ]
    for name, data in events:
        assert_matches_schema(data, EVENT_SCHEMAS[name])
    assert events[-1][1]["response"]["status"] == "failed"
    assert events[-2][1]["code"] == "server_error"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"tools": [{"type": "image_generation", "size": "1000x1000"}]}, "tools[0].size"),
        ({"tools": [{"type": "image_generation", "quality": "ultra"}]}, "tools[0].quality"),
        ({"tools": [{"type": "image_generation", "partial_images": 4}]}, "tools[0].partial_images"),
        ({"tools": [{"type": "image_generation", "model": "dall-e-3"}]}, "tools[0].model"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "https://x"}]}
                ]
            },
            "input[0].content[0].image_url",
        ),
    ],
)
def test_it_refuses_invalid_requests(client, params, param):
    params = {"model": MODEL, "input": "x", **params}
    with pytest.raises(openai.BadRequestError) as refusal:
        client.responses.create(**params)

    assert refusal.value.param == param
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")
