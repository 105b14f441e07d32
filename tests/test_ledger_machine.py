"""A stateful property test of the ledger's promises (issue #13).

Hypothesis drives requests through their life against a scripted provider and injects a
fault at any step: the worker killed before, during or after the call or after keeping the
payload, the database connection dropped at a write (once, or for good), storage failing,
the sweep at any moment (also in the middle of a call), duplicate deliveries, cancels at
any moment (also in the middle of a call), streams cut after a preview, and every odd
answer (zero usage, an unusable image with or without usage, timeouts, 5xx, 429, refusals,
connect failures). After every step:

- no second call after a call the provider billed (checked at the moment of the call);
- an attempt the provider billed is never recorded as not billed, and nothing is $0 on a 200;
- every ended request's cost is what its attempts add up to.

When a schedule ends, time runs on (leases expire, the sweep runs, queued rows are
delivered) until nothing is running or queued, and `ledger_check --storage`'s checks find
nothing: no request stuck past its lease plus a sweep, no file without its row.

The provider is an in-process double of `studio.imagegen.generate` (the real SDK over HTTP
is covered by tests/test_ledger.py): that keeps 500 schedules inside `make test`.
`make bench` runs 10,000 (LEDGER_SCHEDULES=10000) and prints what was exercised.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
from collections import Counter
from datetime import timedelta

import pytest
from django.db import OperationalError, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from PIL import Image

from studio import imagegen, models, tasks
from studio.billing import Answer
from studio.management.commands import ledger_check
from studio.models import TERMINAL_STATUSES, Attempt, GenerationRequest, Status
from studio.pricing import combine_readings, read_usage

SCHEDULES = int(os.environ.get("LEDGER_SCHEDULES", "500"))
EXERCISED: Counter = Counter()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 90, 160)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()
IMAGE = imagegen.GeneratedImage(PNG, hashlib.sha256(PNG).hexdigest(), 64, 64, "png")
USAGE = {
    "input_tokens": 10,
    "output_tokens": 196,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
}

# What the provider does with one call, and whether it bills it.
ANSWERS = {
    "ok": True,
    "ok_zero_usage": True,
    "ok_no_usage": True,
    "bad_image_with_usage": True,
    "bad_image_no_usage": True,
    "stream_cut": True,
    "timeout_after_send": True,
    "error_500": False,
    "error_429": False,
    "refused": False,
    "not_sent": False,
    "sweep_mid_call": True,
    "broke_after_first_image": True,
    "cancel_mid_call": True,
}
# Where the worker fails during one delivery.
FAULTS = [
    "none",
    "none",
    "killed_before_call",
    "killed_during_call",
    "killed_after_call",
    "killed_after_payload",
    "db_drop_once_on_rows",
    "db_gone_on_rows",
    "db_drop_once_on_failure",
    "storage_down",
]


class Killed(BaseException):
    """The worker process died here: nothing after this line runs."""


class Provider:
    """Scripted answers for the next call; remembers which calls it billed."""

    def __init__(self, machine: LedgerMachine) -> None:
        self.machine = machine
        self.answer = "ok"
        self.fault = "none"
        self.billed_requests: set = set()
        self.billed_attempts: set = set()
        self.calls = 0

    def generate(self, route, request, on_partial=None, on_event=None):
        assert request.pk not in self.billed_requests, (
            f"a second call for request {request.pk} after a billed one"
        )
        attempt = request.attempts.order_by("-number").first()
        if self.fault == "killed_before_call":
            raise Killed
        self.calls += 1
        answer = self.answer
        billed = ANSWERS[answer]
        if billed:
            self.billed_requests.add(request.pk)
            self.billed_attempts.add(attempt.pk)
        if self.fault == "killed_during_call":
            raise Killed
        if on_partial is not None and request.partial_images:
            on_partial(imagegen.PartialImage(0, 0, IMAGE))
        if on_event is not None:
            on_event()
        if answer == "sweep_mid_call":
            self.machine.time_passes_and_sweep()
        elif answer == "cancel_mid_call":
            GenerationRequest.objects.get(pk=request.pk).cancel(self.machine.user)
        if answer in ("error_500", "error_429", "refused"):
            status = {"error_500": 500, "error_429": 429, "refused": 400}[answer]
            reason = {500: "provider_5xx", 429: "rate_limit", 400: "policy"}[status]
            raise imagegen.ImageGenError(
                reason,
                f"scripted {status}",
                status,
                provider_request_id="req_e",
                answer=Answer.ERROR,
            )
        if answer == "not_sent":
            raise imagegen.ImageGenError("connection", "refused", answer=Answer.NOT_SENT)
        if answer == "timeout_after_send":
            raise imagegen.ImageGenError("timeout", "slow", answer=Answer.NO_ANSWER)
        if answer == "stream_cut":
            raise imagegen.ImageGenError(
                "provider_5xx",
                "stream broke",
                200,
                provider_request_id="req_s",
                answer=Answer.INCOMPLETE,
            )
        if answer.startswith("bad_image"):
            usage = read_usage(USAGE if answer.endswith("with_usage") else None)
            raise imagegen.ImageGenError(
                "invalid_output",
                "broken image",
                200,
                provider_request_id="req_b",
                answer=Answer.INCOMPLETE,
                usage=usage,
            )
        usage = {"ok": USAGE, "ok_zero_usage": {"input_tokens": 0, "output_tokens": 0}}.get(
            answer, USAGE if answer != "ok_no_usage" else None
        )
        # Several images arrive as a stream does: one usage per completed image, combined.
        usage = combine_readings([read_usage(usage) for _ in range(request.n)])
        images, answer_kind, note = [IMAGE] * request.n, Answer.COMPLETE, ""
        if answer == "broke_after_first_image":
            images, answer_kind = [IMAGE], Answer.INCOMPLETE
            note = f"The answer broke after 1 of {request.n} image(s); kept."
        result = imagegen.GenerationResult(images, usage, "req_ok", 200, answer_kind, note)
        if self.fault == "killed_after_call":
            raise Killed
        return result


class LedgerMachine(RuleBasedStateMachine):
    designer = None
    route = None
    media_root = None

    def __init__(self) -> None:
        super().__init__()
        shutil.rmtree(self.media_root / "outputs", ignore_errors=True)
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.user = self.designer
        self.provider = Provider(self)
        self.requests: list[str] = []
        self.patches: list[tuple[object, str, object]] = []
        self._patch(tasks.imagegen, "generate", self.provider.generate)
        self._patch(tasks.time, "sleep", lambda seconds: None)
        self._patch(models.time, "sleep", lambda seconds: None)
        # A dropped connection is simulated by the write raising; "reconnecting" inside
        # the test's transaction must not really close it.
        self._patch(tasks, "connection", _NoClose())
        self._patch(GenerationRequest, "enqueue", lambda request, countdown=0: None)

    def _patch(self, owner, name, value) -> None:
        self.patches.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def teardown(self) -> None:
        try:
            self.settle()
        finally:
            for owner, name, value in reversed(self.patches):
                setattr(owner, name, value)
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    # --- steps -----------------------------------------------------------------------------

    @initialize(n=st.sampled_from([1, 2]), previews=st.sampled_from([0, 1]))
    def submit_first(self, n, previews) -> None:
        self.submit(n, previews)

    @rule(n=st.sampled_from([1, 2]), previews=st.sampled_from([0, 1]))
    def submit(self, n, previews) -> None:
        request = GenerationRequest.submit(
            created_by=self.user,
            route=self.route,
            prompt='A sign that says "LEDGER"',
            width=1024,
            height=1024,
            quality="low",
            output_format="png",
            n=n,
            partial_images=previews,
        )
        self.requests.append(request.pk)

    @rule(
        data=st.data(),
        answer=st.sampled_from(sorted(ANSWERS)),
        fault=st.sampled_from(FAULTS),
    )
    def deliver(self, data, answer, fault) -> None:
        """A delivery of any request's task: queued ones run, others are duplicates."""
        request_id = data.draw(st.sampled_from(self.requests))
        EXERCISED[f"answer {answer}"] += 1
        EXERCISED[f"fault {fault}"] += 1
        self.deliver_once(request_id, answer, fault)

    @rule()
    def sweep(self) -> None:
        EXERCISED["sweep"] += 1
        self.time_passes_and_sweep()

    @rule(data=st.data())
    def cancel(self, data) -> None:
        EXERCISED["cancel"] += 1
        GenerationRequest.objects.get(pk=data.draw(st.sampled_from(self.requests))).cancel(
            self.user
        )

    # --- machinery ---------------------------------------------------------------------------

    def deliver_once(self, request_id, answer: str, fault: str) -> None:
        self.provider.answer, self.provider.fault = answer, fault
        undo = []

        def patch(owner, name, value):
            undo.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)

        real_record, real_keep = tasks.record_kept_call, tasks.keep_payload
        if fault == "killed_after_payload":

            def kill(*args, **kwargs):
                raise Killed

            patch(tasks, "record_kept_call", kill)
        elif fault in ("db_drop_once_on_rows", "db_gone_on_rows"):
            dropped = []

            def drop(*args, **kwargs):
                if fault == "db_gone_on_rows" or not dropped:
                    dropped.append(1)
                    raise OperationalError("the database connection was lost")
                return real_record(*args, **kwargs)

            patch(tasks, "record_kept_call", drop)
        elif fault == "db_drop_once_on_failure":
            real_settle, dropped = tasks._settle_failure, []

            def drop_failure(*args, **kwargs):
                if not dropped:
                    dropped.append(1)
                    raise OperationalError("the database connection was lost")
                return real_settle(*args, **kwargs)

            patch(tasks, "_settle_failure", drop_failure)
        elif fault == "storage_down":

            def refuse(*args, **kwargs):
                raise OSError("storage is down")

            patch(models, "_save_with_retries", refuse)
        assert real_keep is tasks.keep_payload
        try:
            tasks.run_generation(str(request_id))
        except Killed:
            EXERCISED["worker killed"] += 1
        except OperationalError:
            EXERCISED["database gone for good"] += 1
        finally:
            for owner, name, value in reversed(undo):
                setattr(owner, name, value)
            self.provider.answer, self.provider.fault = "ok", "none"

    def time_passes_and_sweep(self) -> None:
        """Time runs past every lease and retry, then the sweep runs."""
        past = timezone.now() - timedelta(seconds=1)
        GenerationRequest.objects.filter(status=Status.RUNNING).update(lease_expires_at=past)
        GenerationRequest.objects.filter(status=Status.QUEUED).update(retry_at=past)
        tasks.sweep_requests()

    def settle(self) -> None:
        """Let time run on until nothing is running or queued, then check the whole ledger."""
        for _ in range(12):
            self.time_passes_and_sweep()
            open_rows = GenerationRequest.objects.filter(status__in=[Status.QUEUED, Status.RUNNING])
            if not open_rows.exists():
                break
            for request_id in open_rows.values_list("pk", flat=True):
                self.deliver_once(request_id, "ok", "none")
        assert not GenerationRequest.objects.filter(
            status__in=[Status.QUEUED, Status.RUNNING]
        ).exists(), "a request is still open after time ran on"
        # A cancelled request's call that never came back is settled once its task would
        # have been killed; let that time pass too.
        Attempt.objects.filter(outcome=Attempt.Outcome.CALLING).update(
            started_at=timezone.now() - timedelta(days=1)
        )
        tasks.sweep_requests()
        violations = [
            *ledger_check.second_calls(),
            *ledger_check.running_past_lease(timezone.now()),
            *ledger_check.free_answers(),
            *ledger_check.costs_that_do_not_add_up(),
            *ledger_check.storage_mismatches(),
        ]
        assert not violations, violations
        EXERCISED["schedules"] += 1
        for status in GenerationRequest.objects.values_list("status", flat=True):
            EXERCISED[f"ended {status}"] += 1

    # --- after every step ----------------------------------------------------------------------

    @invariant()
    def billed_calls_are_never_recorded_as_free(self) -> None:
        for pk, basis in Attempt.objects.filter(pk__in=self.provider.billed_attempts).values_list(
            "pk", "cost_basis"
        ):
            assert basis != Attempt.CostBasis.NOT_BILLED, f"billed attempt {pk} recorded free"
        assert not Attempt.objects.filter(http_status=200, cost=0).exists()

    @invariant()
    def ended_requests_cost_what_their_attempts_add_up_to(self) -> None:
        attempts: dict = {}
        for request_id, cost, outcome in Attempt.objects.values_list(
            "request_id", "cost", "outcome"
        ):
            attempts.setdefault(request_id, []).append((cost, outcome))
        for pk, cost in GenerationRequest.objects.filter(status__in=TERMINAL_STATUSES).values_list(
            "pk", "cost"
        ):
            rows = attempts.get(pk, [])
            if any(outcome == Attempt.Outcome.CALLING for _, outcome in rows):
                continue  # a cancelled request whose last call is still out
            costs = [attempt_cost for attempt_cost, _ in rows]
            expected = None if None in costs else sum(costs, 0)
            assert cost == expected, (pk, cost, expected)


class _NoClose:
    """The test's connection, in its transaction: closing it is a no-op here."""

    in_atomic_block = True

    def close(self) -> None:
        pass


@pytest.mark.timeout(1200)
@pytest.mark.django_db
def test_the_ledger_holds_under_any_schedule_of_faults(designer, sandbox_route, settings_):
    # Thousands of lines of INFO per run would cost more than the schedules themselves.
    logging.getLogger("studio").setLevel(logging.WARNING)
    LedgerMachine.designer = designer
    LedgerMachine.route = sandbox_route
    LedgerMachine.media_root = settings_.MEDIA_ROOT
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=SCHEDULES,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert EXERCISED["schedules"] >= SCHEDULES
    for fault in set(FAULTS):
        assert EXERCISED[f"fault {fault}"] > 0, fault
    if os.environ.get("LEDGER_SCHEDULES"):
        print("\nledger schedules:", dict(sorted(EXERCISED.items())))


@pytest.fixture
def settings_(settings):
    settings.LEASE_GRACE_SECONDS = 1
    return settings
