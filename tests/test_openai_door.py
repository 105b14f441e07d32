"""The OpenAI-compatible door at /v1/, called by the official `openai` SDK over a socket
(the live server), with a studio API token as the key: the studio's checks, limits and
budgets answer in OpenAI's error shape; a real Celery worker makes the images through the
sandbox route and the SDK gets them back in OpenAI's wire format."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from decimal import Decimal
from unittest.mock import patch

import openai
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image

from api.models import ApiToken
from studio.models import Budget, GenerationRequest, InputImage, OutputImage, Status
from tests.edit_fixtures import mask_png, source_png
from tests.openapi import schema_validator

pytestmark = [pytest.mark.django_db(transaction=True)]


def client_for(live_server, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0)


@pytest.fixture
def door(live_server, live_sandbox, designer) -> openai.OpenAI:
    return client_for(live_server, ApiToken.create_for(designer, "door tests").secret)


# --- Refusals, before anything is queued ----------------------------------------------------


def test_a_wrong_token_is_401_in_openais_shape(live_server, live_sandbox):
    with pytest.raises(openai.AuthenticationError) as raised:
        client_for(live_server, "sts_not-a-token").images.generate(prompt="x")
    assert raised.value.status_code == 401
    assert raised.value.body["code"] == "invalid_api_key"
    assert "not a studio API token" in raised.value.body["message"]


def test_an_expired_token_is_401_naming_the_expiry(live_server, live_sandbox, designer):
    from datetime import timedelta

    from django.utils import timezone

    expired = ApiToken.create_for(designer, "old", timezone.now() - timedelta(days=1))
    with pytest.raises(openai.AuthenticationError, match="expired"):
        client_for(live_server, expired.secret).images.generate(prompt="x")


def test_a_reviewers_token_is_403(live_server, live_sandbox, reviewer):
    secret = ApiToken.create_for(reviewer, "reviewer").secret
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client_for(live_server, secret).images.generate(prompt="x")
    assert raised.value.body["code"] == "insufficient_role"
    assert not GenerationRequest.objects.exists()


def test_size_rules_are_400_naming_size(door):
    with pytest.raises(openai.BadRequestError) as raised:
        door.images.generate(model="gpt-image-2", prompt="x", size="1000x1000")
    assert raised.value.body["param"] == "size"
    assert "multiples of 16" in raised.value.body["message"]
    assert not GenerationRequest.objects.exists()


def test_an_unknown_parameter_is_400_naming_it(door):
    with pytest.raises(openai.BadRequestError) as raised:
        door.images.generate(prompt="x", extra_body={"colour": "red"})
    assert raised.value.body["param"] == "colour"
    assert raised.value.body["code"] == "unknown_parameter"
    assert "'colour'" in raised.value.body["message"]


def test_another_model_is_400_naming_model(door):
    with pytest.raises(openai.BadRequestError) as raised:
        door.images.generate(model="dall-e-3", prompt="x")
    assert raised.value.body["param"] == "model"


def test_a_mask_of_the_wrong_size_is_400_naming_mask(door):
    with pytest.raises(openai.BadRequestError) as raised:
        door.images.edit(
            image=("room.png", source_png(), "image/png"),
            mask=("mask.png", mask_png(512, 512), "image/png"),
            prompt="x",
        )
    assert raised.value.body["param"] == "mask"
    assert not GenerationRequest.objects.exists()


def test_over_the_submission_limit_is_429(door, settings):
    settings.SUBMISSIONS_PER_MINUTE = 0
    with pytest.raises(openai.RateLimitError) as raised:
        door.images.generate(prompt="x")
    assert raised.value.response.headers["retry-after"] == "60"
    assert "Too many submissions" in raised.value.body["message"]


def test_over_budget_is_402_with_the_figures(door, designer, provider_route):
    Budget.objects.create(user=designer, monthly_limit=Decimal("0.01"))
    with pytest.raises(openai.APIStatusError) as raised:
        door.images.generate(prompt="x", extra_body={"route": provider_route.name})
    assert raised.value.status_code == 402
    assert "monthly budget would be exceeded" in raised.value.body["message"]
    assert "$0.01" in raised.value.body["message"]
    assert not GenerationRequest.objects.exists()


def test_wrong_methods_and_paths_answer_in_openais_shape(live_server, live_sandbox):
    def ask(path: str, method: str) -> urllib.error.HTTPError:
        request = urllib.request.Request(f"{live_server.url}{path}", method=method, data=None)
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        return raised.value

    answer = ask("/v1/images/generations", "GET")
    assert answer.code == 405 and answer.headers["allow"] == "POST"
    assert set(json.loads(answer.read())["error"]) == {"message", "type", "param", "code"}
    answer = ask("/v1/chat/completions", "POST")
    assert (
        answer.code == 404 and "images/generations" in json.loads(answer.read())["error"]["message"]
    )


def test_a_prompt_with_nul_is_400_not_a_database_error(door):
    with pytest.raises(openai.BadRequestError) as raised:
        door.images.generate(prompt="a\x00b")
    assert raised.value.body["param"] == "prompt"


# --- Through the worker -------------------------------------------------------------------


@pytest.fixture
def worker_media(celery_worker, settings):
    settings.MEDIA_ROOT = celery_worker.media_root
    return celery_worker


@pytest.mark.services
@pytest.mark.usefixtures("ledger_checked")
def test_generate_through_the_door_is_a_studio_request(door, worker_media, designer):
    raw = door.images.with_raw_response.generate(
        model="gpt-image-2",
        prompt='A poster that says "OPEN DAY"',
        size="1024x1536",
        quality="low",
        output_format="png",
    )
    body = raw.http_response.json()
    assert list(schema_validator("ImagesResponse").iter_errors(body)) == []
    result = raw.parse()
    [image] = result.data
    picture = Image.open(io.BytesIO(base64.b64decode(image.b64_json)))
    assert (picture.format, picture.size) == ("PNG", (1024, 1536))
    assert result.usage.output_tokens > 0 and result.quality == "low"

    generation = GenerationRequest.objects.get(pk=raw.headers["x-request-id"])
    assert generation.status == Status.SUCCEEDED
    assert (generation.created_by, generation.route.name) == (designer, "sandbox")
    assert generation.provider_model == "gpt-image-2"
    assert generation.expected_text_labels == ["OPEN DAY"]
    [attempt] = generation.attempts.all()
    assert attempt.output_image_tokens == result.usage.output_tokens
    [output] = generation.outputs.filter(kind=OutputImage.Kind.FINAL)
    assert output.review_status == "awaiting"  # in the review queue like any other
    assert base64.b64decode(image.b64_json) == output.read()


@pytest.mark.services
@pytest.mark.usefixtures("ledger_checked")
def test_edit_with_mask_through_the_door(door, worker_media):
    result = door.images.edit(
        image=("room.png", source_png(), "image/png"),
        mask=("mask.png", mask_png(), "image/png"),
        prompt='Put a sign that says "OPEN" in the window',
        quality="low",
    )
    [image] = result.data
    picture = Image.open(io.BytesIO(base64.b64decode(image.b64_json)))
    assert picture.size == (1024, 1024)
    generation = GenerationRequest.objects.get()
    assert generation.operation == "edit" and generation.status == Status.SUCCEEDED
    roles = set(generation.inputs.values_list("role", flat=True))
    assert roles == {InputImage.Role.SOURCE, InputImage.Role.MASK}


@pytest.mark.services
@pytest.mark.usefixtures("ledger_checked")
def test_a_refusal_is_400_and_never_sent_again(door, worker_media):
    with pytest.raises(openai.BadRequestError) as raised:
        openai.OpenAI(base_url=door.base_url, api_key=door.api_key, max_retries=2).images.generate(
            prompt="a cat [sandbox:refuse]", quality="low"
        )
    assert raised.value.body["code"] == "moderation_blocked"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert GenerationRequest.objects.count() == 1


# --- No input answers 500 -----------------------------------------------------------------

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
DOOR_FIELDS = (
    "prompt",
    "model",
    "n",
    "size",
    "quality",
    "output_format",
    "output_compression",
    "background",
    "stream",
    "partial_images",
    "response_format",
    "moderation",
    "style",
    "user",
    "route",
    "input_fidelity",
    "extra",
)


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(body=st.dictionaries(st.sampled_from(DOOR_FIELDS), JSON_VALUE, max_size=6) | JSON_VALUE)
def test_no_json_body_answers_a_server_error(client, designer, sandbox_route, monkeypatch, body):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    secret = getattr(designer, "_door_secret", None) or ApiToken.create_for(designer, "f").secret
    designer._door_secret = secret
    with patch("api.door.wait_for_end", new=fake_wait):
        response = client.post(
            "/v1/images/generations",
            data=json.dumps(body, allow_nan=True),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
        )
    assert response.status_code < 500 or response.status_code == 504, response.content
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def fake_wait(request_id, timeout):
    return False


@pytest.mark.services
@pytest.mark.usefixtures("ledger_checked")
def test_a_stream_sends_partial_images_then_the_image(door, worker_media):
    stream = door.images.generate(
        model="gpt-image-2",
        prompt='A poster that says "STREAM"',
        size="1024x1024",
        quality="low",
        stream=True,
        partial_images=2,
    )
    events = list(stream)
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [event.partial_image_index for event in events[:2]] == [0, 1]
    final = Image.open(io.BytesIO(base64.b64decode(events[-1].b64_json)))
    assert final.size == (1024, 1024)
    assert events[-1].usage.output_tokens > 0
    generation = GenerationRequest.objects.get()
    assert generation.partial_images == 2
    assert generation.outputs.filter(kind=OutputImage.Kind.PARTIAL).count() == 2


def test_partial_images_without_stream_is_400(door):
    with pytest.raises(openai.BadRequestError) as raised:
        door.images.generate(prompt="x", partial_images=2)
    assert raised.value.body["param"] == "partial_images"


@pytest.mark.services
@pytest.mark.usefixtures("ledger_checked")
def test_responses_with_the_image_tool_and_a_follow_up(door, worker_media, designer):
    tool = {"type": "image_generation", "size": "1024x1024", "quality": "low"}
    first = door.responses.create(
        model="gpt-5.4", input='Draw a poster that says "HELLO"', tools=[tool]
    )
    [call] = [item for item in first.output if item.type == "image_generation_call"]
    picture = Image.open(io.BytesIO(base64.b64decode(call.result)))
    assert picture.size == (1024, 1024)
    assert first.id and first.output_text is not None
    follow_up = door.responses.create(
        model="gpt-5.4",
        input=[{"role": "user", "content": 'Now make it say "BYE"'}],
        tools=[tool],
        previous_response_id=first.id,
    )
    assert follow_up.previous_response_id == first.id
    [conversation] = designer.conversations.all()
    turns = list(conversation.turns.order_by("created_at"))
    assert [t.status for t in turns] == [Status.SUCCEEDED, Status.SUCCEEDED]
    assert turns[1].previous_response_id == first.id
    assert turns[1].expected_text_labels == ["BYE"]


def test_responses_refuses_an_image_model_and_unknown_previous_ids(door):
    tool = {"type": "image_generation"}
    with pytest.raises(openai.BadRequestError) as raised:
        door.responses.create(model="gpt-image-2", input="x", tools=[tool])
    assert raised.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as raised:
        door.responses.create(
            model="gpt-5.4", input="x", tools=[tool], previous_response_id="resp_nope"
        )
    assert raised.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as raised:
        door.responses.create(model="gpt-5.4", input="x", tools=[{**tool, "colour": 1}])
    assert raised.value.body["code"] == "unknown_parameter"
