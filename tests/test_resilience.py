"""Retries with reasons, fallback routes, cancel, crash recovery, broker and storage failures.

The task runs in-process here (the test delivers it as the broker would); the provider is
the sandbox or a scripted double, both over real HTTP through the real openai SDK.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from studio import imagegen, models, tasks
from studio.models import Attempt, GenerationRequest, Route, Status
from studio.tasks import backoff_seconds, plan_retry, run_generation, sweep_requests
from tests.doubles import ScriptedProvider, error_reply, image_reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def deliveries(monkeypatch, settings):
    """Capture what would go to the broker; retries become due at once."""
    sent: list[tuple[str, float]] = []
    monkeypatch.setattr(
        GenerationRequest,
        "enqueue",
        lambda self, countdown=0: sent.append((str(self.id), countdown)),
    )
    settings.RETRY_BASE_SECONDS = Decimal("0.001")
    settings.RETRY_MAX_SECONDS = Decimal("0.002")
    return sent


def submit(user, route, prompt="poster", **extra) -> GenerationRequest:
    values = {"width": 1024, "height": 1024, "quality": "low", "output_format": "png", **extra}
    return GenerationRequest.submit(created_by=user, route=route, prompt=prompt, **values)


def run_until_done(generation, deliveries: int = 10) -> GenerationRequest:
    for _ in range(deliveries):
        run_generation(str(generation.id))
        generation.refresh_from_db()
        if generation.is_terminal:
            return generation
        time.sleep(0.01)
    raise AssertionError(f"still {generation.status}")


def scripted_route(provider: ScriptedProvider, name="gateway", **extra) -> Route:
    values = {
        "owner": "gateway.example",
        "base_url": provider.base_url,
        "api_key_env": "GATEWAY_KEY",
        **extra,
    }
    return Route.objects.create(name=name, **values)


@pytest.fixture
def gateway_key(monkeypatch):
    monkeypatch.setenv("GATEWAY_KEY", "k")


class TestRetries:
    def test_rate_limited_then_ok_gives_one_success_and_two_attempts(
        self, designer, price_sheet, gateway_key
    ):
        with ScriptedProvider(
            error_reply(429, "rate_limit_exceeded", retry_after="0"), image_reply()
        ) as provider:
            route = scripted_route(provider)
            generation = run_until_done(submit(designer, route))
        assert generation.status == Status.SUCCEEDED
        attempts = list(generation.attempts.all())
        assert [(a.outcome, a.retry_reason, a.http_status) for a in attempts] == [
            (Attempt.Outcome.FAILED, "rate_limit", 429),
            (Attempt.Outcome.SUCCEEDED, "", 200),
        ]
        assert attempts[1].routed_because == "retry after rate_limit"
        assert len(provider.received) == 2
        assert generation.outputs.count() == 1

    def test_a_read_timeout_is_retried_only_as_often_as_the_route_allows(
        self, designer, live_sandbox
    ):
        live_sandbox.timeout_seconds = 1
        live_sandbox.max_attempts = 3
        live_sandbox.timeout_retries = 1
        live_sandbox.save()
        generation = run_until_done(submit(designer, live_sandbox, "[sandbox:latency=2] slow"))
        assert [a.retry_reason for a in generation.attempts.all()] == ["timeout", "timeout"]
        assert (generation.status, generation.failure_reason) == (Status.FAILED, "timeout")

    def test_a_refusal_is_never_retried_and_shown_as_refused(self, designer, live_sandbox):
        generation = run_until_done(submit(designer, live_sandbox, "[sandbox:refuse] poster"))
        assert generation.status == Status.REFUSED
        assert generation.attempts.count() == 1
        assert "safety system" in generation.failure_message

    @pytest.mark.parametrize(
        ("prompt", "extra", "reason"),
        [
            ("a poster", {"width": 1000}, "size"),
            ("a poster", {"requested_model": "not-a-model"}, "validation"),
        ],
    )
    def test_size_and_validation_errors_are_never_retried(
        self, designer, live_sandbox, prompt, extra, reason
    ):
        generation = run_until_done(submit(designer, live_sandbox, prompt, **extra))
        assert (generation.status, generation.failure_reason) == (Status.FAILED, reason)
        assert generation.attempts.count() == 1

    def test_the_row_waits_for_its_retry_to_be_due(
        self, designer, price_sheet, gateway_key, settings
    ):
        settings.RETRY_BASE_SECONDS = Decimal("30")
        settings.RETRY_MAX_SECONDS = Decimal("60")
        with ScriptedProvider(error_reply(503)) as provider:
            generation = submit(designer, scripted_route(provider))
            run_generation(str(generation.id))
            run_generation(str(generation.id))  # an early duplicate delivery
        generation.refresh_from_db()
        assert generation.status == Status.QUEUED
        assert generation.retry_at > timezone.now() + timedelta(seconds=10)
        assert generation.attempts.count() == 1


class TestFallback:
    def test_after_a_5xx_the_next_attempt_lands_on_the_fallback_route(
        self, designer, live_sandbox, gateway_key
    ):
        with ScriptedProvider(error_reply(500)) as provider:
            primary = scripted_route(
                provider,
                fallback=live_sandbox,
                pricing_mode="per_call",
                price_per_call=Decimal("0.03"),
            )
            generation = run_until_done(submit(designer, primary, 'A sign saying "OPEN"'))
        assert generation.status == Status.SUCCEEDED
        first, second = generation.attempts.all()
        assert (first.route, first.route_owner, first.retry_reason) == (
            primary,
            "gateway.example",
            "provider_5xx",
        )
        assert (second.route, second.route_owner) == (live_sandbox, "sandbox")
        assert second.routed_because == "fallback from gateway after provider_5xx"
        assert (first.model_sent, second.model_sent) == ("gpt-image-2", "gpt-image-2")
        # Contracts stay apart: the gateway's error answer is not billed, the sandbox call
        # is priced by tokens.
        assert first.cost_basis == Attempt.CostBasis.NOT_BILLED and first.cost == 0
        assert second.cost_basis == Attempt.CostBasis.TOKENS

    def test_there_is_no_fallback_on_a_policy_refusal(self, designer, live_sandbox, gateway_key):
        with ScriptedProvider(error_reply(400, "moderation_blocked")) as provider:
            primary = scripted_route(provider, fallback=live_sandbox)
            generation = run_until_done(submit(designer, primary))
        assert generation.status == Status.REFUSED
        assert generation.attempts.count() == 1

    def test_there_is_no_fallback_to_a_route_without_a_needed_capability(
        self, designer, live_sandbox, gateway_key
    ):
        with ScriptedProvider(error_reply(500)) as provider:
            primary = scripted_route(
                provider, fallback=live_sandbox, supports_transparent=True, max_attempts=2
            )
            generation = run_until_done(submit(designer, primary, background="transparent"))
        assert [a.route for a in generation.attempts.all()] == [primary, primary]
        assert generation.failure_reason == "provider_5xx"


class TestRetryPlan:
    def test_backoff_grows_and_honours_retry_after(self, settings):
        settings.RETRY_BASE_SECONDS = Decimal("2")
        settings.RETRY_MAX_SECONDS = Decimal("60")
        assert 1 <= backoff_seconds(1) <= 2
        assert 1 <= backoff_seconds(4) <= 16
        assert backoff_seconds(1, retry_after=30) == 30
        assert backoff_seconds(1, retry_after=600) == 60

    @pytest.mark.parametrize("reason", ["policy", "validation", "size", "unknown"])
    def test_reasons_that_never_retry(self, designer, sandbox_route, reason):
        generation = submit(designer, sandbox_route)
        attempt = Attempt.begin(generation, sandbox_route)
        attempt.record_failure(
            reason=reason,
            http_status=400,
            error_code="",
            message="x",
            provider_request_id="",
            started=0,
            ended=0,
        )
        assert plan_retry(generation, attempt, imagegen.ImageGenError(reason, "x")) is None


class TestCancel:
    def test_cancel_while_queued_means_no_call(self, client, designer, live_sandbox):
        generation = submit(designer, live_sandbox)
        client.force_login(designer)
        client.post(f"/requests/{generation.id}/cancel")
        run_generation(str(generation.id))
        generation.refresh_from_db()
        assert (generation.status, generation.failure_reason) == (Status.CANCELLED, "cancelled")
        assert "Cancelled by dana" in generation.failure_message
        assert not generation.attempts.exists()

    def test_cancel_while_running_discards_the_result_and_keeps_the_cost(
        self, designer, live_sandbox
    ):
        generation = submit(designer, live_sandbox, '[sandbox:latency=1.5] "LATE"')

        def deliver() -> None:
            try:
                run_generation(str(generation.id))
            finally:
                connection.close()  # this thread's own connection

        worker = threading.Thread(target=deliver)
        worker.start()
        deadline = time.monotonic() + 10
        while not Attempt.objects.filter(request=generation, outcome="calling").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert generation.cancel(designer)
        worker.join(timeout=30)
        generation.refresh_from_db()
        assert generation.status == Status.CANCELLED
        [attempt] = generation.attempts.all()
        assert attempt.outcome == Attempt.Outcome.SUCCEEDED
        assert attempt.cost > 0
        assert generation.cost == attempt.cost
        assert "finished and was billed" in generation.failure_message
        assert not generation.outputs.exists()

    def test_another_designer_cannot_cancel(self, client, designer, other_designer, sandbox_route):
        generation = submit(designer, sandbox_route)
        client.force_login(other_designer)
        assert client.post(f"/requests/{generation.id}/cancel").status_code == 404
        generation.refresh_from_db()
        assert generation.status == Status.QUEUED


class TestCrashRecovery:
    def _expire_lease(self, generation):
        GenerationRequest.objects.filter(pk=generation.pk).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )

    def test_a_call_left_in_flight_is_marked_unknown_and_never_called_again(
        self, designer, live_sandbox, deliveries
    ):
        generation = submit(designer, live_sandbox)
        assert generation.claim()
        Attempt.begin(generation, live_sandbox)  # the worker died during this call
        self._expire_lease(generation)
        assert sweep_requests()["stuck_failed"] == 1
        generation.refresh_from_db()
        assert (generation.status, generation.failure_reason) == (Status.FAILED, "unknown_outcome")
        [attempt] = generation.attempts.all()
        assert (attempt.outcome, attempt.cost, attempt.cost_basis) == (
            Attempt.Outcome.UNKNOWN,
            None,
            Attempt.CostBasis.POSSIBLY_BILLED,
        )
        assert generation.cost is None
        run_generation(str(generation.id))  # the broker redelivers the dead worker's task
        assert generation.attempts.count() == 1

    def test_a_row_claimed_by_a_worker_that_died_before_calling_runs_again(
        self, designer, live_sandbox, deliveries
    ):
        generation = submit(designer, live_sandbox)
        deliveries.clear()
        assert generation.claim()
        self._expire_lease(generation)
        assert sweep_requests()["stuck_requeued"] == 1
        assert deliveries == [(str(generation.id), 0)]
        generation = run_until_done(generation)
        assert generation.status == Status.SUCCEEDED
        assert generation.attempts.count() == 1

    def test_a_live_lease_is_left_alone(self, designer, live_sandbox):
        generation = submit(designer, live_sandbox)
        assert generation.claim()
        assert sweep_requests()["stuck_failed"] == 0
        generation.refresh_from_db()
        assert generation.status == Status.RUNNING

    def test_a_cancelled_request_whose_last_call_never_returned_is_settled(
        self, designer, live_sandbox, settings
    ):
        generation = submit(designer, live_sandbox)
        assert generation.claim()
        attempt = Attempt.begin(generation, live_sandbox)
        assert generation.cancel(by=designer)  # the call is left to finish ...
        assert sweep_requests()["abandoned_calls"] == 0  # ... and may still
        # ... but its worker died: once its task would have been killed, it is marked unknown.
        longest = settings.CELERY_TASK_TIME_LIMIT + settings.LEASE_GRACE_SECONDS
        Attempt.objects.filter(pk=attempt.pk).update(
            started_at=timezone.now() - timedelta(seconds=longest + 1)
        )
        assert sweep_requests()["abandoned_calls"] == 1
        attempt.refresh_from_db()
        assert (attempt.outcome, attempt.cost_basis) == (
            Attempt.Outcome.UNKNOWN,
            Attempt.CostBasis.POSSIBLY_BILLED,
        )
        assert sweep_requests()["abandoned_calls"] == 0

    def test_a_result_recorded_meanwhile_is_not_marked_unknown(self, designer, live_sandbox):
        generation = submit(designer, live_sandbox)
        assert generation.claim()
        attempt = Attempt.begin(generation, live_sandbox)
        stale = Attempt.objects.get(pk=attempt.pk)  # what the sweep read
        Attempt.objects.filter(pk=attempt.pk).update(outcome=Attempt.Outcome.SUCCEEDED)
        assert stale.mark_unknown() is False
        assert stale.outcome == Attempt.Outcome.SUCCEEDED


class TestBrokerAndStorageFailures:
    def test_broker_down_at_submit_leaves_the_row_queued_for_the_sweep(
        self, designer, live_sandbox, monkeypatch, settings
    ):
        from kombu.exceptions import OperationalError

        monkeypatch.undo()  # the real enqueue, with a broker that refuses
        settings.RETRY_BASE_SECONDS = Decimal("0.001")

        def broker_down(*args, **kwargs):
            raise OperationalError("Error 111 connecting to broker. Connection refused.")

        monkeypatch.setattr(tasks.run_generation, "apply_async", broker_down)
        generation = submit(designer, live_sandbox)
        generation.refresh_from_db()
        assert generation.status == Status.QUEUED

        sent = []
        monkeypatch.setattr(
            tasks.run_generation, "apply_async", lambda args, **kw: sent.append(args)
        )
        assert sweep_requests()["sent_again"] == 0  # not stale yet
        GenerationRequest.objects.filter(pk=generation.pk).update(
            created_at=timezone.now() - timedelta(seconds=settings.QUEUED_STALE_SECONDS + 1)
        )
        assert sweep_requests()["sent_again"] == 1
        assert sent == [[str(generation.id)]]

    def test_storage_failing_once_after_success_retries_storage_only(
        self, designer, live_sandbox, monkeypatch, settings
    ):
        failures = []
        real_save = default_storage.save

        def flaky_save(*args, **kwargs):
            if not failures:
                failures.append("boom")
                raise OSError("S3 said 503 Slow Down")
            return real_save(*args, **kwargs)

        monkeypatch.setattr(default_storage, "save", flaky_save)
        monkeypatch.setattr(models.time, "sleep", lambda seconds: None)
        generation = run_until_done(submit(designer, live_sandbox))
        assert generation.status == Status.SUCCEEDED
        assert failures == ["boom"]
        assert generation.attempts.count() == 1
        assert generation.outputs.count() == 1
