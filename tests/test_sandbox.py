"""The sandbox image API, called over a real socket with the real openai SDK."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import urllib.error
import urllib.request

import openai
import pytest
from openai import OpenAI
from PIL import Image

from studio import pricing
from studio.sandbox.directives import Directives, strip_directives
from studio.sandbox.render import Picture, labels_to_draw, misspell, quoted_labels, render_image
from tests.openapi import assert_matches_schema
from tests.sandbox_helpers import decode

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
LABEL_PROMPT = 'A poster that says "Summer Sale" and “50% off” on a beach'


@pytest.fixture
def client(live_server) -> OpenAI:
    return OpenAI(base_url=live_server.url + "/sandbox/v1", api_key="sandbox", max_retries=0)


@pytest.fixture
def endpoint(live_server) -> str:
    return live_server.url + "/sandbox/v1/images/generations"


def generate_raw(client: OpenAI, **params) -> tuple[dict, dict[str, str]]:
    """The response JSON and headers, exactly as sent."""
    params.setdefault("model", "gpt-image-2")
    raw = client.images.with_raw_response.generate(**params)
    return json.loads(raw.text), dict(raw.headers)


def post_raw(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def test_it_returns_a_square_png_by_default_matching_the_schema(client):
    body, headers = generate_raw(client, prompt=LABEL_PROMPT)

    assert_matches_schema(body, "ImagesResponse")
    assert REQUEST_ID.match(headers["x-request-id"])
    assert abs(body["created"] - time.time()) < 60
    assert len(body["data"]) == 1
    image = decode(body["data"][0]["b64_json"])
    assert (image.format, image.size) == ("PNG", (1024, 1024))
    assert body["size"] == "1024x1024"
    assert body["output_format"] == "png"
    assert body["background"] == "opaque"
    assert body["quality"] == "high"  # auto resolves to high


@pytest.mark.parametrize("output_format", ["png", "jpeg", "webp"])
def test_it_encodes_each_format_at_a_non_standard_size(client, output_format):
    body, _ = generate_raw(
        client, prompt=LABEL_PROMPT, size="1536x864", output_format=output_format
    )

    assert_matches_schema(body, "ImagesResponse")
    image = decode(body["data"][0]["b64_json"])
    assert image.format == PIL_FORMATS[output_format]
    assert image.size == (1536, 864)
    assert body["output_format"] == output_format
    # The published schema enumerates three sizes; any other is left out rather than misreported.
    assert "size" not in body


def test_it_follows_output_compression_for_jpeg(client):
    small = client.images.generate(
        model="gpt-image-2", prompt=LABEL_PROMPT, output_format="jpeg", output_compression=10
    )
    large = client.images.generate(
        model="gpt-image-2", prompt=LABEL_PROMPT, output_format="jpeg", output_compression=95
    )

    assert len(small.data[0].b64_json) < len(large.data[0].b64_json) / 2


def test_it_reports_usage_by_the_gpt_image_2_formula(client):
    prompt = LABEL_PROMPT + " [sandbox:latency=0]"
    result = client.images.generate(
        model="gpt-image-2-2026-04-21", prompt=prompt, size="1536x864", quality="medium", n=2
    )

    image_tokens = 2 * pricing.estimate_output_tokens(1536, 864, "medium")
    text_tokens = pricing.estimate_text_tokens(prompt)
    assert result.quality == "medium"
    assert result.usage.input_tokens == text_tokens
    assert result.usage.input_tokens_details.text_tokens == text_tokens
    assert result.usage.input_tokens_details.image_tokens == 0
    assert result.usage.output_tokens == image_tokens
    assert result.usage.output_tokens_details.image_tokens == image_tokens
    assert result.usage.total_tokens == text_tokens + image_tokens


def test_it_gives_identical_bytes_for_the_same_request(client):
    params = {"model": "gpt-image-2", "prompt": LABEL_PROMPT, "size": "1024x1536"}
    first = client.images.generate(**params)
    second = client.images.generate(**params)

    assert first.data[0].b64_json == second.data[0].b64_json


def test_it_varies_each_of_n_images(client):
    result = client.images.generate(model="gpt-image-2", prompt=LABEL_PROMPT, n=3, quality="low")

    encoded = [item.b64_json for item in result.data]
    assert len(set(encoded)) == 3
    assert all(decode(b64).size == (1024, 1024) for b64 in encoded)


def test_it_draws_the_quoted_labels_dark_on_light(client):
    labelled = decode(
        client.images.generate(prompt='"HELLO"', model="gpt-image-2").data[0].b64_json
    )
    unlabelled = decode(
        client.images.generate(prompt="HELLO", model="gpt-image-2").data[0].b64_json
    )

    def darkest_in_middle(image: Image.Image) -> int:
        band = image.convert("L").crop((0, 300, 1024, 640))
        return band.getextrema()[0]

    assert darkest_in_middle(labelled) < 40
    assert darkest_in_middle(unlabelled) > 60


def test_it_strips_directives_and_ignores_unknown_ones(client):
    plain = client.images.generate(model="gpt-image-2", prompt='"Hello"')
    directed = client.images.generate(
        model="gpt-image-2", prompt='"Hello" [sandbox:latency=0] [sandbox:frobnicate=3]'
    )

    assert directed.data[0].b64_json == plain.data[0].b64_json


def test_it_draws_a_misspelt_label_when_told(client):
    plain = client.images.generate(model="gpt-image-2", prompt='"Hello"')
    typo = client.images.generate(model="gpt-image-2", prompt='"Hello" [sandbox:typo]')

    assert typo.data[0].b64_json != plain.data[0].b64_json
    assert decode(typo.data[0].b64_json).size == (1024, 1024)


def test_it_sends_a_distinct_request_id_on_every_response(client):
    _, first = generate_raw(client, prompt="one")
    _, second = generate_raw(client, prompt="two")
    with pytest.raises(openai.InternalServerError) as failure:
        client.images.generate(model="gpt-image-2", prompt="[sandbox:error=500]")

    ids = {first["x-request-id"], second["x-request-id"], failure.value.request_id}
    assert len(ids) == 3
    assert all(REQUEST_ID.match(request_id) for request_id in ids)


def test_it_refuses_like_the_safety_system(client):
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.generate(model="gpt-image-2", prompt='"Hi" [sandbox:refuse]')

    assert refusal.value.code == "moderation_blocked"
    assert refusal.value.type == "image_generation_user_error"
    assert refusal.value.request_id in refusal.value.message
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")


def test_it_rate_limits_with_a_retry_after(client):
    with pytest.raises(openai.RateLimitError) as limited:
        client.images.generate(model="gpt-image-2", prompt="[sandbox:error=429]")

    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.type == "requests"
    assert limited.value.response.headers["Retry-After"] == "1"
    assert_matches_schema(limited.value.response.json(), "ErrorResponse")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_it_fails_with_any_server_error_asked_for(client, status):
    with pytest.raises(openai.InternalServerError) as failure:
        client.images.generate(model="gpt-image-2", prompt=f'"Hi" [sandbox:error={status}]')

    assert failure.value.status_code == status
    assert failure.value.type == "server_error"
    assert_matches_schema(failure.value.response.json(), "ErrorResponse")


def test_it_answers_500_with_openais_message(client):
    with pytest.raises(openai.InternalServerError) as failure:
        client.images.generate(model="gpt-image-2", prompt="[sandbox:error=500]")

    assert failure.value.body == {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "param": None,
        "code": None,
    }


def test_it_fails_with_a_client_error_asked_for(client):
    with pytest.raises(openai.NotFoundError):
        client.images.generate(model="gpt-image-2", prompt="[sandbox:error=404]")


def test_it_sends_base64_that_does_not_decode_when_told(client):
    result = client.images.generate(model="gpt-image-2", prompt='"Hi" [sandbox:bad-b64]')

    broken = result.data[0].b64_json
    assert "!!!" in broken
    with pytest.raises(binascii.Error):
        base64.b64decode(broken, validate=True)
    with pytest.raises(binascii.Error):
        base64.b64decode(broken)  # the lenient decoder, which skips "!", fails too


def test_it_waits_as_long_as_told(client):
    started = time.monotonic()
    client.images.generate(model="gpt-image-2", prompt='"Hi" [sandbox:latency=0.5]')

    assert time.monotonic() - started >= 0.5


def test_it_caps_latency_by_the_setting(client, settings):
    settings.SANDBOX_MAX_LATENCY_SECONDS = 0
    started = time.monotonic()
    client.images.generate(model="gpt-image-2", prompt='"Hi" [sandbox:latency=60]')

    assert time.monotonic() - started < 10


def test_it_holds_a_timeout_request_past_the_clients_patience(client, settings):
    settings.SANDBOX_MAX_LATENCY_SECONDS = 1
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).images.generate(
            model="gpt-image-2", prompt='"Hi" [sandbox:timeout]'
        )


@pytest.mark.parametrize(
    ("size", "rule"),
    [
        ("1000x1000", "multiples of 16"),
        ("512x512", "at least 655,360 pixels"),
        ("3072x1008", "3 times the short edge"),
        ("4096x1536", "at most 3840 pixels"),
        ("big", "WIDTHxHEIGHT"),
    ],
)
def test_it_refuses_sizes_that_break_the_rules(client, size, rule):
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.generate(model="gpt-image-2", prompt="x", size=size)

    assert refusal.value.param == "size"
    assert refusal.value.body["message"].startswith(f"Invalid size '{size}'. ")
    assert rule in refusal.value.body["message"]
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"quality": "ultra"}, "quality"),
        ({"output_format": "gif"}, "output_format"),
        ({"background": "sepia"}, "background"),
        ({"n": 0}, "n"),
        ({"n": 11}, "n"),
        ({"output_format": "jpeg", "output_compression": 101}, "output_compression"),
        ({"output_format": "webp", "output_compression": -1}, "output_compression"),
        ({"output_compression": 80}, "output_compression"),  # png takes no compression
        ({"model": "dall-e-3"}, "model"),
        ({"prompt": "x" * 32_001}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"style": "vivid"}, "style"),
    ],
)
def test_it_refuses_invalid_parameters(client, params, param):
    params = {"model": "gpt-image-2", "prompt": "a cat", **params}
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.generate(**params)

    assert refusal.value.param == param
    assert refusal.value.type == "invalid_request_error"
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")


def test_it_accepts_a_prompt_of_the_maximum_length(client):
    result = client.images.generate(model="gpt-image-2", prompt="x" * 32_000, quality="low")

    assert len(result.data) == 1


def test_it_refuses_a_transparent_background_for_gpt_image_2(client):
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.generate(model="gpt-image-2", prompt="a cat", background="transparent")

    assert refusal.value.param == "background"
    assert "transparent background is not supported" in refusal.value.message.lower()


@pytest.mark.parametrize("authorization", [openai.omit, "Bearer", "Basic c2FuZGJveA=="])
def test_it_wants_a_bearer_key(client, authorization):
    with pytest.raises(openai.AuthenticationError) as refusal:
        client.images.generate(
            model="gpt-image-2", prompt="a cat", extra_headers={"Authorization": authorization}
        )

    assert refusal.value.code == "invalid_api_key"
    assert refusal.value.param is None
    assert REQUEST_ID.match(refusal.value.request_id)
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")


@pytest.mark.parametrize(
    ("body", "param"),
    [(b"{not json", None), (b"[1, 2]", None), (b'{"model": "gpt-image-2"}', "prompt")],
)
def test_it_refuses_bodies_that_are_not_a_request(endpoint, body, param):
    status, error, headers = post_raw(
        endpoint, body, {"Authorization": "Bearer sandbox", "Content-Type": "application/json"}
    )

    assert status == 400
    assert error["error"]["param"] == param
    assert REQUEST_ID.match(headers["x-request-id"])
    assert_matches_schema(error, "ErrorResponse")


def test_it_only_answers_post(endpoint):
    request = urllib.request.Request(endpoint, headers={"Authorization": "Bearer sandbox"})
    with pytest.raises(urllib.error.HTTPError) as refusal:
        urllib.request.urlopen(request, timeout=10)

    assert refusal.value.code == 405


def test_it_renders_4k_quickly():
    picture = Picture(
        text=LABEL_PROMPT,
        labels=tuple(labels_to_draw(LABEL_PROMPT)),
        width=3840,
        height=2160,
        quality="high",
        output_format="png",
    )
    started = time.monotonic()
    image = Image.open(io.BytesIO(render_image(picture)))

    assert time.monotonic() - started < 2
    assert image.size == (3840, 2160)


def test_labels_come_from_both_kinds_of_quotes():
    assert quoted_labels('say "Summer  Sale" and “50% off” but not "" or this') == [
        "Summer Sale",
        "50% off",
    ]


def test_a_typo_changes_one_letter_of_the_first_label_only():
    text = '"Grand Opening" and "Free Coffee"'

    typo = labels_to_draw(text, typo=True)

    assert labels_to_draw(text) == ["Grand Opening", "Free Coffee"]
    assert typo[1] == "Free Coffee"
    assert typo[0] != "Grand Opening"
    assert len(typo[0]) == len("Grand Opening")
    assert sum(a != b for a, b in zip(typo[0], "Grand Opening", strict=True)) == 1
    assert labels_to_draw(text, typo=True) == typo


@pytest.mark.parametrize("label", ["A", "2026", "Ünïcödé x", "!!"])
def test_a_typo_changes_any_label(label):
    assert misspell(label) != label


def test_directives_are_read_into_one_object():
    prompt = '"Hi" [sandbox:latency=1.5] [SANDBOX:error=429][sandbox:typo] [sandbox:bad_b64]'

    assert Directives.from_prompt(prompt) == Directives(
        latency_seconds=1.5, error_status=429, typo=True, bad_b64=True
    )
    assert strip_directives(prompt) == '"Hi"'


def test_directives_with_bad_values_are_ignored():
    prompt = "[sandbox:latency=soon] [sandbox:latency=-1] [sandbox:error=200] [sandbox:refuse=no]"

    assert Directives.from_prompt(prompt) == Directives()
