"""The sandbox in production and its fidelity to OpenAI's wire format (issue 14, sandbox half).

In-process tests use Django's test client (same middleware and URLconf as a server); the
process layout (gunicorn, the image's commands) is in test_sandbox_processes.py.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import timedelta

import openai
import pytest
from openai import OpenAI

from studio.sandbox import directives, generations
from tests.openapi import assert_matches_schema
from tests.sandbox_helpers import png_bytes
from tests.test_settings import run_manage

REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")
GENERATIONS = "/sandbox/v1/images/generations"
PROD = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "studio.example.com",
}


def post_json(client, path: str, body: dict, key: str | None = "sandbox", **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post(path, json.dumps(body), content_type="application/json", **headers, **extra)


def assert_openai_error(response, status: int) -> dict:
    """OpenAI's error shape, with a request id, and nothing else."""
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert REQUEST_ID.match(response["x-request-id"])
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert_matches_schema(body, "ErrorResponse")
    return body["error"]


# --- Production: only SANDBOX_API_KEY opens the sandbox --------------------------------------


def test_check_deploy_fails_when_the_production_sandbox_has_no_key():
    result = run_manage("check", "--deploy", SANDBOX_ENABLED="1", **PROD)

    assert result.returncode != 0
    assert "studio.E001" in result.stderr
    assert "SANDBOX_API_KEY" in result.stderr


def test_check_deploy_passes_when_the_production_sandbox_has_a_key():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SANDBOX_ENABLED="1",
        SANDBOX_API_KEY=secrets.token_urlsafe(32),
        **PROD,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("bearer", ["sandbox", "anything", "sk-" + "x" * 40])
def test_without_a_key_the_production_sandbox_accepts_no_bearer(client, settings, bearer, db):
    settings.SANDBOX_KEY_REQUIRED = True
    settings.SANDBOX_API_KEY = ""

    response = post_json(client, GENERATIONS, {"prompt": "x"}, key=bearer)

    error = assert_openai_error(response, 401)
    assert error["code"] == "invalid_api_key"
    assert "SANDBOX_API_KEY" in error["message"]


def test_with_a_key_the_production_sandbox_accepts_only_that_key(client, settings, db):
    settings.SANDBOX_KEY_REQUIRED = True
    settings.SANDBOX_API_KEY = "the-sandbox-key"

    wrong = post_json(client, GENERATIONS, {"prompt": "x"}, key="sandbox")
    not_ascii = post_json(client, GENERATIONS, {"prompt": "x"}, key="cl\u00e9-\u00fc")
    right = post_json(client, GENERATIONS, {"prompt": "x", "quality": "low"}, key="the-sandbox-key")

    assert assert_openai_error(wrong, 401)["code"] == "invalid_api_key"
    assert assert_openai_error(not_ascii, 401)["code"] == "invalid_api_key"
    assert right.status_code == 200


# --- Latency directives end before the web server's timeout ---------------------------------


def test_the_latency_cap_is_derived_from_the_web_timeout():
    show = (
        "from django.conf import settings as s; "
        "print('limits', s.WEB_TIMEOUT_SECONDS, s.SANDBOX_MAX_LATENCY_SECONDS)"
    )

    def limits(**env: str) -> tuple[float, float]:
        result = run_manage("shell", "-c", show, **env)
        timeout, cap = re.search(r"limits (\S+) (\S+)", result.stdout).groups()
        return float(timeout), float(cap)

    assert limits()[0] == 30  # gunicorn's own default
    assert 0 < limits()[1] < 30
    assert 30 < limits(WEB_TIMEOUT_SECONDS="120")[1] < 120


def test_a_latency_cap_at_or_past_the_web_timeout_is_refused():
    result = run_manage("check", WEB_TIMEOUT_SECONDS="30", SANDBOX_MAX_LATENCY_SECONDS="30")

    assert result.returncode != 0
    assert "SANDBOX_MAX_LATENCY_SECONDS" in result.stderr
    assert "WEB_TIMEOUT_SECONDS" in result.stderr


class SleepLog:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def sleeps(monkeypatch) -> SleepLog:
    log = SleepLog()
    monkeypatch.setattr(directives.time, "sleep", log)
    return log


@pytest.mark.parametrize(
    "prompt",
    [
        "[sandbox:latency=1000] x",
        "[sandbox:timeout] x",
        "[sandbox:latency=5] [sandbox:pace=5] x",
        "[sandbox:pace=1000] x",
    ],
)
def test_latency_and_pace_together_stay_within_the_cap(client, settings, sleeps, prompt, db):
    settings.SANDBOX_MAX_LATENCY_SECONDS = 7
    body = {"prompt": prompt, "quality": "low", "stream": True, "partial_images": 3, "n": 2}

    response = post_json(client, GENERATIONS, body)
    assert response.status_code in (200, 504)
    if response.streaming:
        b"".join(response.streaming_content)

    assert sleeps.seconds, "the directive asked for a wait"
    assert sum(sleeps.seconds) <= 7


def test_the_timeout_directive_waits_the_cap_then_answers_504(client, settings, sleeps, db):
    settings.SANDBOX_MAX_LATENCY_SECONDS = 7

    response = post_json(client, GENERATIONS, {"prompt": "[sandbox:timeout] x"})

    assert assert_openai_error(response, 504)["type"] == "timeout"
    assert sum(sleeps.seconds) == pytest.approx(7, abs=0.5)


# --- Fidelity: input_fidelity, and every error in OpenAI's shape ------------------------------


@pytest.fixture
def sdk(live_server) -> OpenAI:
    return OpenAI(base_url=live_server.url + "/sandbox/v1", api_key="sandbox", max_retries=0)


def source_png() -> bytes:
    from PIL import Image

    return png_bytes(Image.new("RGB", (1024, 1024), (90, 120, 150)))


@pytest.mark.parametrize("fidelity", ["high", "low"])
def test_gpt_image_2_refuses_input_fidelity_on_edits(sdk, fidelity, db):
    with pytest.raises(openai.BadRequestError) as refusal:
        sdk.images.edit(
            model="gpt-image-2",
            image=("a.png", source_png(), "image/png"),
            prompt="x",
            input_fidelity=fidelity,
        )

    assert refusal.value.param == "input_fidelity"
    assert "gpt-image-2" in refusal.value.body["message"]
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")
    assert REQUEST_ID.match(refusal.value.response.headers["x-request-id"])


def test_gpt_image_2_takes_an_edit_without_input_fidelity(sdk, db):
    result = sdk.images.edit(
        model="gpt-image-2", image=("a.png", source_png(), "image/png"), prompt="x", quality="low"
    )

    assert len(result.data) == 1


def test_the_responses_image_tool_refuses_input_fidelity_for_gpt_image_2(sdk, db):
    tool = {"type": "image_generation", "model": "gpt-image-2", "input_fidelity": "high"}
    with pytest.raises(openai.BadRequestError) as refusal:
        sdk.responses.create(model="gpt-5.4", input="a poster", tools=[tool])

    assert refusal.value.param == "tools[0].input_fidelity"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/sandbox/v1/images/generations", 405),
        ("put", "/sandbox/v1/images/edits", 405),
        ("get", "/sandbox/v1/responses", 405),
        ("post", "/sandbox/v1/images/variations", 404),
        ("get", "/sandbox/v1/models", 404),
        ("post", "/sandbox/v1/", 404),
        ("post", "/sandbox/v1/responses/resp_1/cancel", 404),
    ],
)
def test_unknown_routes_and_methods_answer_in_openais_shape(client, method, path, status, db):
    response = getattr(client, method)(path, HTTP_AUTHORIZATION="Bearer sandbox")

    error = assert_openai_error(response, status)
    assert error["type"] == "invalid_request_error"
    assert path.removeprefix("/sandbox") in error["message"]
    if status == 405:
        assert response["Allow"] == "POST"


def test_a_body_over_the_limit_answers_in_openais_shape(client, settings, db):
    response = client.post(
        GENERATIONS,
        b"{}",
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer sandbox",
        CONTENT_LENGTH=str(settings.MAX_REQUEST_BODY_BYTES + 1),
    )

    assert assert_openai_error(response, 413)["code"] == "request_too_large"


def test_an_unexpected_failure_answers_500_in_openais_shape(client, monkeypatch, db):
    client.raise_request_exception = False

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the sandbox")

    monkeypatch.setattr(generations, "draw_generation", broken)
    response = post_json(client, GENERATIONS, {"prompt": "x"})

    error = assert_openai_error(response, 500)
    assert error["type"] == "server_error"
    assert "a bug in the sandbox" not in error["message"]


def test_studio_pages_keep_their_own_error_pages(client, db):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert "x-request-id" not in response
    assert not response["Content-Type"].startswith("application/json")


# --- Responses: conversation state outlives the process that made it ------------------------


def test_a_follow_up_finds_its_previous_response_in_the_database(client, db):
    from studio.sandbox import assistant

    tool = {"type": "image_generation", "model": "gpt-image-2", "quality": "low"}
    first = post_json(
        client,
        "/sandbox/v1/responses",
        {"model": "gpt-5.4", "input": "a red door", "tools": [tool]},
    )
    assert first.status_code == 200
    first_id = first.json()["id"]
    # Nothing of the first turn lives in this process any more.
    assert not hasattr(assistant, "_remembered")

    second = post_json(
        client,
        "/sandbox/v1/responses",
        {
            "model": "gpt-5.4",
            "input": "make it blue",
            "tools": [{**tool, "action": "edit"}],
            "previous_response_id": first_id,
        },
    )

    assert second.status_code == 200, second.content
    [call] = [item for item in second.json()["output"] if item["type"] == "image_generation_call"]
    assert call["action"] == "edit"


def test_old_responses_are_forgotten(client, settings, db):
    from studio.sandbox.models import StoredResponse

    settings.SANDBOX_RESPONSE_RETENTION_HOURS = 1
    tool = {"type": "image_generation", "model": "gpt-image-2", "quality": "low"}
    first = post_json(
        client, "/sandbox/v1/responses", {"model": "gpt-5.4", "input": "a", "tools": [tool]}
    )
    first_id = first.json()["id"]
    stored = StoredResponse.objects.get(pk=first_id)
    StoredResponse.objects.filter(pk=first_id).update(
        created_at=stored.created_at - timedelta(hours=2)
    )
    post_json(client, "/sandbox/v1/responses", {"model": "gpt-5.4", "input": "b", "tools": [tool]})

    late = post_json(
        client,
        "/sandbox/v1/responses",
        {"model": "gpt-5.4", "input": "c", "tools": [tool], "previous_response_id": first_id},
    )
    assert assert_openai_error(late, 400)["code"] == "previous_response_not_found"
