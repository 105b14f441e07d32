"""The ledger's CSV export: contents for a known data set, streaming, headers, no secrets."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from studio.models import Attempt, OutputImage, ReviewStatus
from tests.test_audit import (
    ALL_TIME,
    build_ledger,
    create_openai_route,
    make_attempt,
    make_output,
    make_request,
)

pytestmark = pytest.mark.django_db
Basis, Outcome = Attempt.CostBasis, Attempt.Outcome


@pytest.fixture
def ledger(designer, other_designer, price_sheet, provider_route, sandbox_route) -> dict:
    openai = create_openai_route(fallback=provider_route)
    return build_ledger(designer, other_designer, openai, provider_route, sandbox_route)


def export(client, user, **params):
    client.force_login(user)
    response = client.get(reverse("audit:export"), params)
    assert response.status_code == 200
    return response


def read(response) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_it_streams_an_attachment_with_one_header_row(client, admin_user, ledger):
    response = export(client, admin_user)
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="studio-attempts-')
    text = b"".join(response.streaming_content).decode()
    lines = text.splitlines()
    assert lines[0].startswith("request_id,attempt,started_at,")
    assert sum(line.startswith("request_id,") for line in lines) == 1
    assert len(lines) == 1 + 8  # the default 30 days: the old request's attempt is not in it


def test_each_line_is_one_attempt_with_its_contract_and_cost(client, admin_user, ledger):
    rows = read(export(client, admin_user, **ALL_TIME))
    assert len(rows) == 9
    assert [row["started_at"] for row in rows] == sorted(row["started_at"] for row in rows)
    r1, r2 = ledger["requests"][:2]
    (first,) = [row for row in rows if row["request_id"] == str(r1.id)]
    assert first["route_owner"] == "openai" and first["cost_basis"] == "tokens"
    assert first["cost_usd"] == "0.053180"
    assert first["price_sheet_from"].startswith("2026-04-21")
    assert first["simulated"] == "no"
    assert first["shape_quality"] == "medium" and first["shape_size"] == "1024x1024"
    assert first["shape_prompt_sha256"] == r1.prompt_sha256
    assert first["shape_input_image_count"] == "0" and first["shape_partial_images"] == "0"
    assert first["review_status"] == ReviewStatus.APPROVED
    assert first["request_estimated_usd"] == "0.053180"
    timeout, fallback = (row for row in rows if row["request_id"] == str(r2.id))
    # Unpriced is written as unpriced, with no amount: never as 0.
    assert timeout["cost_usd"] == "" and timeout["cost_basis"] == "unpriced"
    assert timeout["retry_reason"] == "timeout" and timeout["latency_ms"] == "150000"
    assert timeout["request_cost_usd"] == ""
    assert timeout["output_path"] == ""
    assert fallback["route"] == "gateway" and fallback["route_owner"] == "laozhang.ai"
    assert fallback["routed_because"] == "fallback from openai after timeout"
    assert fallback["cost_usd"] == "0.030000" and fallback["cost_basis"] == "per_call"
    # Both attempts carry the request's review status, from its stored output.
    assert timeout["review_status"] == fallback["review_status"] == ReviewStatus.AWAITING
    output = OutputImage.objects.get(attempt__request=r2)
    assert fallback["output_path"] == output.file.name
    assert fallback["output_sha256"] == output.sha256
    # The access-checked file view, never a public /media/ path (which answers 404).
    assert fallback["output_url"] == f"http://testserver{output.get_absolute_url()}"
    assert fallback["delete_after"] == output.delete_after.isoformat()
    assert fallback["deleted_at"] == ""
    (sandbox,) = [row for row in rows if row["route_owner"] == "sandbox"]
    assert sandbox["simulated"] == "yes" and sandbox["cost_usd"] == "0.006000"


def test_an_attempt_with_two_outputs_stays_one_line(client, admin_user, designer, sandbox_route):
    generation = make_request(designer, sandbox_route, n=2)
    attempt = make_attempt(generation, 1, cost=Decimal("0.012"), basis=Basis.TOKENS)
    first = make_output(attempt, index=0, review_status=ReviewStatus.APPROVED)
    second = make_output(attempt, index=1, review_status=ReviewStatus.REJECTED)
    make_output(attempt, index=0, kind=OutputImage.Kind.PARTIAL)  # previews are not pointers
    (row,) = read(export(client, admin_user))
    assert row["output_path"] == f"{first.file.name} {second.file.name}"
    assert row["output_sha256"] == f"{first.sha256} {second.sha256}"
    assert row["cost_usd"] == "0.012000"  # once, not once per output
    assert row["review_status"] == "mixed"


def test_it_never_contains_the_api_key(client, admin_user, designer, provider_route, monkeypatch):
    secret = "sk-test-THIS-MUST-NEVER-BE-EXPORTED"
    monkeypatch.setenv(provider_route.api_key_env, secret)
    generation = make_request(designer, provider_route)
    make_attempt(generation, 1, cost=Decimal("0.03"), basis=Basis.PER_CALL)
    text = b"".join(export(client, admin_user).streaming_content).decode()
    assert secret not in text
    assert provider_route.api_key_env not in text


def test_provider_text_cannot_become_a_spreadsheet_formula(
    client, admin_user, designer, provider_route
):
    generation = make_request(designer, provider_route)
    make_attempt(
        generation, 1, outcome=Outcome.FAILED, reason="validation", error_code="=HYPERLINK(1)"
    )
    (row,) = read(export(client, admin_user))
    assert row["error_code"] == "'=HYPERLINK(1)"


def test_it_is_streamed_from_a_database_iterator(client, admin_user, ledger, monkeypatch):
    """Rows are pulled in chunks as the response is read, never gathered in a list first."""
    from django.db.models.query import QuerySet

    chunk_sizes = []
    original = QuerySet.iterator

    def spy(self, chunk_size=None):
        chunk_sizes.append(chunk_size)
        return original(self, chunk_size=chunk_size)

    monkeypatch.setattr(QuerySet, "iterator", spy)
    response = export(client, admin_user)
    assert chunk_sizes == []  # nothing is read until the body is
    assert len(read(response)) == 8
    assert chunk_sizes == [2000]
