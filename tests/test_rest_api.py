"""The REST API under /api/: token auth, submissions through the pages' own forms, requests
with attempts, outputs and review, files, cursor pages, the review queue and decisions, and
one error shape naming field and rule."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.models import ApiToken
from studio.models import Budget, GenerationRequest, OutputImage
from tests.edit_fixtures import mask_png, source_png

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)


def bearer(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.create_for(user, 'tests').secret}"}


def post_json(client, path: str, body, auth: dict):
    return client.post(path, json.dumps(body), content_type="application/json", **auth)


def assert_error_shape(response, status: int) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"status", "code", "message", "fields"} and error["status"] == status
    return error


def test_the_schema_and_docs_are_served(client):
    schema = client.get("/api/schema").json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/requests/generate", "/api/requests/{request_id}", "/api/review/queue"} <= set(
        schema["paths"]
    )
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    assert b"cdn" not in docs.content.lower()  # served from the studio: the CSP holds


def test_no_token_and_a_wrong_token_are_401(client, designer):
    assert_error_shape(client.get("/api/requests/"), 401)
    error = assert_error_shape(
        client.get("/api/requests/", HTTP_AUTHORIZATION="Bearer sts_nope"), 401
    )
    assert "not a studio API token" in error["message"]


def test_generate_goes_through_the_composers_rules(client, designer, sandbox_route):
    auth = bearer(designer)
    response = post_json(
        client,
        "/api/requests/generate",
        {"prompt": 'A sign that says "OPEN"', "size": "1024x1536", "expected_text": ["ACME"]},
        auth,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    generation = GenerationRequest.objects.get(pk=body["id"])
    assert (generation.created_by, generation.route) == (designer, sandbox_route)
    assert (generation.width, generation.height) == (1024, 1536)
    assert body["expected_text_labels"] == ["OPEN", "ACME"] == generation.expected_text_labels
    assert body["status"] == "queued" and body["estimated_cost"] is not None


def test_a_broken_size_rule_names_the_field_and_rule(client, designer, sandbox_route):
    error = assert_error_shape(
        post_json(
            client, "/api/requests/generate", {"prompt": "x", "size": "1000x1024"}, bearer(designer)
        ),
        400,
    )
    [field, *_] = error["fields"]
    assert field["field"] == "width" and "multiples of 16" in field["message"]
    assert not GenerationRequest.objects.exists()


def test_wrong_types_and_unknown_fields_are_named(client, designer, sandbox_route):
    error = assert_error_shape(
        post_json(
            client,
            "/api/requests/generate",
            {"prompt": "x", "n": "many", "colour": 1},
            bearer(designer),
        ),
        400,
    )
    named = {(f["field"], f["rule"]) for f in error["fields"]}
    assert ("n", "int_parsing") in named and ("colour", "extra_forbidden") in named


def test_reviewers_cannot_submit(client, reviewer, sandbox_route):
    error = assert_error_shape(
        post_json(client, "/api/requests/generate", {"prompt": "x"}, bearer(reviewer)), 403
    )
    assert "designer" in error["message"]


def test_limits_and_budgets_apply(client, designer, sandbox_route, provider_route, settings):
    auth = bearer(designer)
    Budget.objects.create(user=designer, monthly_limit=Decimal("0.01"))
    error = assert_error_shape(
        post_json(client, "/api/requests/generate", {"prompt": "x", "route": "gateway"}, auth),
        402,
    )
    assert "monthly budget would be exceeded" in error["message"]
    settings.SUBMISSIONS_PER_MINUTE = 0
    response = post_json(client, "/api/requests/generate", {"prompt": "x"}, auth)
    assert_error_shape(response, 429)
    assert response["Retry-After"] == "60"


def test_an_edit_with_a_mask_in_multipart(client, designer, sandbox_route):
    response = client.post(
        "/api/requests/edit",
        {
            "prompt": 'Put a sign that says "OPEN" in the window',
            "source": SimpleUploadedFile("room.png", source_png(), "image/png"),
            "mask": SimpleUploadedFile("mask.png", mask_png(), "image/png"),
        },
        **bearer(designer),
    )
    assert response.status_code == 201, response.content
    generation = GenerationRequest.objects.get(pk=response.json()["id"])
    assert generation.operation == "edit" and generation.has_mask


def test_an_edit_with_a_bad_mask_names_mask(client, designer, sandbox_route):
    error = assert_error_shape(
        client.post(
            "/api/requests/edit",
            {
                "prompt": "x",
                "source": SimpleUploadedFile("room.png", source_png(), "image/png"),
                "mask": SimpleUploadedFile("mask.png", mask_png(512, 512), "image/png"),
            },
            **bearer(designer),
        ),
        400,
    )
    assert [f["field"] for f in error["fields"]] == ["mask"]


def test_read_a_request_with_attempts_outputs_and_review(client, objects, designer, other_designer):
    body = client.get(f"/api/requests/{objects['request_id']}", **bearer(designer)).json()
    assert [a["number"] for a in body["attempts"]] == [1]
    [output] = body["outputs"]
    assert output["id"] == str(objects["output_id"])
    assert output["review_status"] == "changes_requested"
    assert output["decisions"][0]["reason"] == "bluer"
    file = client.get(output["file_url"], **bearer(designer))
    assert file.status_code == 200 and file["Content-Type"] == "image/png"
    assert b"".join(file.streaming_content) == OutputImage.objects.get().read()
    # Another designer's request is not there for them.
    assert_error_shape(
        client.get(f"/api/requests/{objects['request_id']}", **bearer(other_designer)), 404
    )
    assert_error_shape(client.get("/api/requests/not-a-uuid", **bearer(designer)), 400)


def test_the_list_pages_by_cursor_without_gaps_or_repeats(client, designer, sandbox_route):
    for number in range(7):
        GenerationRequest.submit(
            created_by=designer,
            route=sandbox_route,
            prompt=f"p{number}",
            width=1024,
            height=1024,
            quality="low",
            output_format="png",
        )
    auth, seen, cursor = bearer(designer), [], None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/requests/", query, **auth).json()
        seen += [item["prompt"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p{n}" for n in reversed(range(7))]
    error = assert_error_shape(client.get("/api/requests/", {"cursor": "garbage"}, **auth), 400)
    assert error["fields"][0]["field"] == "cursor"


def test_reviewers_read_the_queue_and_decide(client, objects, reviewer, designer):
    output = OutputImage.objects.get()
    OutputImage.objects.filter(pk=output.pk).update(review_status="awaiting")
    GenerationRequest.objects.filter(pk=output.request_id).update(status="succeeded")
    assert_error_shape(client.get("/api/review/queue", **bearer(designer)), 403)
    auth = bearer(reviewer)
    queue = client.get("/api/review/queue", **auth).json()
    assert [item["output"]["id"] for item in queue["items"]] == [str(output.pk)]
    path = f"/api/review/outputs/{output.pk}/decisions"
    error = assert_error_shape(post_json(client, path, {"verdict": "rejected"}, auth), 400)
    assert error["fields"][0]["field"] == "reason"
    response = post_json(client, path, {"verdict": "rejected", "reason": "too dark"}, auth)
    assert response.status_code == 201 and response.json()["review_status"] == "rejected"


# --- No input answers 500 -----------------------------------------------------------------

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
GENERATE_FIELDS = (
    "prompt",
    "frame",
    "slots",
    "route",
    "size",
    "quality",
    "output_format",
    "output_compression",
    "background",
    "n",
    "partial_images",
    "expected_text",
    "x",
)
QUERY_VALUE = st.text(max_size=30) | st.sampled_from(["0", "-1", "101", "queued", "edit"])
FUZZ = hypothesis_settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@FUZZ
@given(body=st.dictionaries(st.sampled_from(GENERATE_FIELDS), JSON_VALUE, max_size=6) | JSON_VALUE)
def test_no_generate_body_answers_a_server_error(client, designer, sandbox_route, body):
    auth = getattr(designer, "_auth", None) or bearer(designer)
    designer._auth = auth
    response = client.post(
        "/api/requests/generate",
        json.dumps(body, allow_nan=True),
        content_type="application/json",
        **auth,
    )
    assert response.status_code in (201, 400, 402, 429), response.content
    if response.status_code != 201:
        assert_error_shape(response, response.status_code)


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(("cursor", "limit", "status", "operation", "mine")), QUERY_VALUE, max_size=4
    ),
    verdict=st.dictionaries(
        st.sampled_from(("verdict", "reason", "override_reason", "y")), JSON_VALUE, max_size=3
    ),
)
def test_no_query_or_decision_answers_a_server_error(client, objects, reviewer, query, verdict):
    auth = getattr(reviewer, "_auth", None) or bearer(reviewer)
    reviewer._auth = auth
    for path in ("/api/requests/", "/api/review/queue"):
        response = client.get(path, {k: v.replace("\x00", "") for k, v in query.items()}, **auth)
        assert response.status_code in (200, 400), response.content
    response = client.post(
        f"/api/review/outputs/{objects['output_id']}/decisions",
        json.dumps(verdict, allow_nan=True),
        content_type="application/json",
        **auth,
    )
    assert response.status_code in (201, 400, 403), response.content
