"""run_generation end to end in-process: the real SDK, the sandbox on a socket, real storage."""

from __future__ import annotations

import hashlib
import io
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from studio.models import Attempt, GenerationRequest, OutputImage, Status
from studio.pricing import estimate_output_tokens, money
from studio.tasks import run_generation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch, settings):
    # The tests deliver the task themselves; retries come back at once.
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    settings.RETRY_BASE_SECONDS = Decimal("0.001")
    settings.RETRY_MAX_SECONDS = Decimal("0.002")


def run_until_done(generation: GenerationRequest, deliveries: int = 10) -> GenerationRequest:
    """Deliver the task as the broker would, again after each scheduled retry."""
    for _ in range(deliveries):
        run_generation(str(generation.id))
        generation.refresh_from_db()
        if generation.is_terminal:
            return generation
        time.sleep(0.01)
    raise AssertionError(f"still {generation.status} after {deliveries} deliveries")


def submit_request(user, route, prompt: str, **extra) -> GenerationRequest:
    values = {"width": 1024, "height": 1024, "quality": "low", "output_format": "png", **extra}
    return GenerationRequest.submit(created_by=user, route=route, prompt=prompt, **values)


def test_it_stores_the_image_and_logs_the_attempt(live_sandbox, designer):
    generation = submit_request(
        designer,
        live_sandbox,
        'A lamp with the label "LUMA"',
        width=1536,
        height=864,
        output_format="webp",
        output_compression=80,
    )
    run_generation(str(generation.id))

    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED
    [attempt] = generation.attempts.all()
    assert attempt.outcome == Attempt.Outcome.SUCCEEDED
    assert attempt.route_owner == "sandbox"
    assert (attempt.model_requested, attempt.model_sent) == ("gpt-image-2", "gpt-image-2")
    assert attempt.provider_request_id.startswith("req_")
    assert attempt.http_status == 200
    assert attempt.request_shape["size"] == "1536x864"
    assert attempt.request_shape["prompt_sha256"] == generation.prompt_sha256
    expected_tokens = estimate_output_tokens(1536, 864, "low")
    assert attempt.output_image_tokens == expected_tokens
    assert attempt.cost_basis == Attempt.CostBasis.TOKENS
    assert attempt.cost == (
        Decimal(attempt.input_text_tokens * 5 + expected_tokens * 30) / 1_000_000
    )
    assert attempt.latency_ms is not None
    assert generation.cost == attempt.cost
    assert generation.output_tokens == expected_tokens

    [output] = generation.outputs.all()
    assert output.file.name.startswith(f"outputs/{generation.id}/")
    data = default_storage.open(output.file.name).read()
    assert hashlib.sha256(data).hexdigest() == output.sha256
    assert output.bytes == len(data)
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == ("WEBP", (1536, 864))
    assert (output.width, output.height, output.format) == (1536, 864, "webp")
    # Retention: the route has no setting of its own, so the studio's applies.
    assert output.delete_after == (output.created_at + timedelta(days=90)).date()
    assert output.review_status == "awaiting"


def test_a_request_delivered_twice_is_billed_once(live_sandbox, designer):
    generation = submit_request(designer, live_sandbox, "twice")
    run_generation(str(generation.id))
    run_generation(str(generation.id))
    assert Attempt.objects.filter(request=generation).count() == 1
    assert OutputImage.objects.filter(request=generation).count() == 1


def test_a_refused_request_ends_refused_after_one_attempt(live_sandbox, designer):
    generation = submit_request(designer, live_sandbox, "[sandbox:refuse] something")
    run_generation(str(generation.id))
    generation.refresh_from_db()
    assert generation.status == Status.REFUSED
    assert generation.failure_reason == "policy"
    [attempt] = generation.attempts.all()
    assert (attempt.retry_reason, attempt.http_status, attempt.error_code) == (
        "policy",
        400,
        "moderation_blocked",
    )
    # An error answer carries no usage: nothing billed, which is not the same as unpriced.
    assert (attempt.cost, attempt.cost_basis) == (0, Attempt.CostBasis.NOT_BILLED)
    assert generation.cost == 0


def test_a_server_error_every_time_ends_failed_with_provider_5xx_after_the_limit(
    live_sandbox, designer
):
    generation = submit_request(designer, live_sandbox, "[sandbox:error=500] poster")
    run_until_done(generation)
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "provider_5xx")
    assert generation.failure_message == (
        "The server had an error while processing your request. Tried 3 times."
    )
    attempts = list(generation.attempts.all())
    assert len(attempts) == live_sandbox.max_attempts == 3
    for attempt in attempts:
        assert (attempt.outcome, attempt.retry_reason, attempt.http_status) == (
            Attempt.Outcome.FAILED,
            "provider_5xx",
            500,
        )
        assert attempt.provider_request_id.startswith("req_")
    assert [a.routed_because for a in attempts] == [
        "",
        "retry after provider_5xx",
        "retry after provider_5xx",
    ]


def test_bad_base64_ends_failed_invalid_output_with_nothing_stored(
    live_sandbox, designer, settings
):
    generation = submit_request(designer, live_sandbox, "[sandbox:bad-b64] poster")
    run_until_done(generation)
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "invalid_output")
    assert not generation.outputs.exists()
    assert not (settings.MEDIA_ROOT / "outputs" / str(generation.id)).exists()
    # The 200 reported its usage, so it was billed: it is never sent again behind the
    # designer's back, and the designer is told what it cost.
    [attempt] = generation.attempts.all()
    assert (attempt.retry_reason, attempt.http_status) == ("invalid_output", 200)
    assert attempt.cost is not None and attempt.cost > 0
    assert attempt.cost_basis == Attempt.CostBasis.TOKENS
    assert "it was not sent again, so nothing is paid twice" in generation.failure_message


def test_a_route_without_its_key_fails_before_any_call(provider_route, designer, monkeypatch):
    monkeypatch.delenv("GATEWAY_TEST_KEY", raising=False)
    generation = submit_request(designer, provider_route, "poster")
    run_generation(str(generation.id))
    generation.refresh_from_db()
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "route_unavailable")
    assert "GATEWAY_TEST_KEY" in generation.failure_message
    assert not generation.attempts.exists()


def test_an_unknown_request_id_does_nothing(db):
    run_generation("00000000-0000-0000-0000-000000000000")
    assert not GenerationRequest.objects.exists()


def test_a_per_call_route_costs_its_flat_price(live_sandbox, designer):
    live_sandbox.pricing_mode = "per_call"
    live_sandbox.price_per_call = Decimal("0.03")
    live_sandbox.save()
    generation = submit_request(designer, live_sandbox, "flat")
    assert generation.estimated_cost == Decimal("0.03")
    run_generation(str(generation.id))
    [attempt] = generation.attempts.all()
    assert (attempt.cost, attempt.cost_basis) == (Decimal("0.03"), Attempt.CostBasis.PER_CALL)


def test_a_timeout_fails_and_its_cost_is_unknown(live_sandbox, designer):
    live_sandbox.timeout_seconds = 1
    live_sandbox.save()
    live_sandbox.max_attempts = 2
    live_sandbox.save()
    generation = submit_request(designer, live_sandbox, "[sandbox:latency=2] slow")
    run_until_done(generation)
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "timeout")
    # The provider may have finished and billed after we gave up: possibly billed, never 0,
    # and not sent again (the route allows no timeout retries).
    [attempt] = generation.attempts.all()
    assert attempt.retry_reason == "timeout"
    assert (attempt.cost, attempt.cost_basis) == (None, Attempt.CostBasis.POSSIBLY_BILLED)
    assert attempt.exposure == generation.estimated_cost
    assert generation.cost is None and generation.exposure == generation.estimated_cost
    assert f"up to {money(generation.exposure)}" in generation.failure_message


def test_a_flat_price_route_bills_what_it_estimated_for_several_images(live_sandbox, designer):
    live_sandbox.pricing_mode = "per_call"
    live_sandbox.price_per_call = Decimal("0.03")
    live_sandbox.save()
    generation = submit_request(designer, live_sandbox, "three", n=3)
    run_generation(str(generation.id))
    generation.refresh_from_db()
    [attempt] = generation.attempts.all()
    assert generation.outputs.count() == 3
    assert attempt.cost == generation.estimated_cost == Decimal("0.09")
