"""The sandbox's Files API and Batch API, through the official SDK over a socket, in
OpenAI's wire shapes."""

from __future__ import annotations

import json
import time

import openai
import pytest
from openai import OpenAI

from studio import pricing
from tests.openapi import assert_matches_schema
from tests.sandbox_helpers import decode

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_server, settings) -> OpenAI:
    settings.SANDBOX_BATCH_SECONDS = 0
    return OpenAI(base_url=live_server.url + "/sandbox/v1", api_key="sandbox", max_retries=0)


def line(custom_id: str, prompt: str, size: str = "1024x1024") -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/images/generations",
        "body": {"model": "gpt-image-2", "prompt": prompt, "size": size, "quality": "low"},
    }


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in lines)


def run_batch(client: OpenAI, lines: list[dict]):
    uploaded = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    deadline = time.monotonic() + 30
    while batch.status in ("validating", "in_progress", "finalizing"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    return batch


def read_lines(client: OpenAI, file_id: str | None) -> list[dict]:
    if not file_id:
        return []
    return [json.loads(raw) for raw in client.files.content(file_id).read().splitlines()]


def test_a_batch_of_generations_completes_with_each_line_matched_by_custom_id(client):
    uploaded = client.files.create(
        file=("in.jsonl", jsonl([line("a", 'A "SALE" poster')])), purpose="batch"
    )
    assert_matches_schema(
        client.files.with_raw_response.retrieve(uploaded.id).http_response.json(), "OpenAIFile"
    )
    batch = run_batch(
        client,
        [
            line("row-1", 'A poster that says "SALE"'),
            line("row-2", 'A poster that says "OPEN"', size="1536x1024"),
            line("row-3", "[sandbox:batch-fail] a poster"),
            line("row-4", "[sandbox:batch-missing] a poster"),
            line("row-5", "a poster", size="1000x1000"),
        ],
    )
    assert batch.status == "completed"
    assert_matches_schema(
        client.batches.with_raw_response.retrieve(batch.id).http_response.json(), "Batch"
    )
    assert (batch.request_counts.total, batch.request_counts.completed) == (5, 2)
    assert batch.request_counts.failed == 2
    outputs = {item["custom_id"]: item for item in read_lines(client, batch.output_file_id)}
    errors = {item["custom_id"]: item for item in read_lines(client, batch.error_file_id)}
    assert set(outputs) == {"row-1", "row-2"} and set(errors) == {"row-3", "row-5"}
    answer = outputs["row-2"]["response"]
    assert answer["status_code"] == 200 and answer["request_id"].startswith("req_")
    assert_matches_schema(answer["body"], "ImagesResponse")
    assert decode(answer["body"]["data"][0]["b64_json"]).size == (1536, 1024)
    assert answer["body"]["usage"]["output_tokens"] == pricing.estimate_output_tokens(
        1536, 1024, "low"
    )
    assert (
        errors["row-3"]["error"]["code"] == "server_error" and errors["row-3"]["response"] is None
    )
    assert errors["row-5"]["response"]["status_code"] == 400
    assert "row-4" not in outputs and "row-4" not in errors


def test_an_expiring_batch_ends_its_lines_batch_expired(client):
    batch = run_batch(client, [line("x", "[sandbox:batch-expire] a poster"), line("y", "b")])
    assert batch.status == "expired"
    codes = {
        item["custom_id"]: item["error"]["code"] for item in read_lines(client, batch.error_file_id)
    }
    assert codes == {"x": "batch_expired", "y": "batch_expired"}


def test_batches_are_listed_and_cancelled(client, settings):
    settings.SANDBOX_BATCH_SECONDS = 3600
    uploaded = client.files.create(file=("in.jsonl", jsonl([line("a", "p")])), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    assert client.batches.retrieve(batch.id).status == "in_progress"
    assert [item.id for item in client.batches.list()][:1] == [batch.id]
    assert client.batches.cancel(batch.id).status == "cancelled"


def test_bad_batches_are_refused_in_openais_error_shape(client):
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")
    with pytest.raises(openai.BadRequestError, match="No such File object"):
        client.batches.create(
            input_file_id="file-nope", endpoint="/v1/images/generations", completion_window="24h"
        )
    uploaded = client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="1h"
        )
