"""Celery tasks: take an id, claim the row, call imagegen, record what happened on the row.

The tasks own the retry policy. Each call is one Attempt; a retry is the row handed back to
the queue with a countdown, so a crash between attempts loses nothing and every delivery
starts with the same conditional claim.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from studio import drift, imagegen
from studio.billing import Answer, Billing, may_have_billed, may_send_again
from studio.models import (
    LOST_CALL_REASONS,
    TERMINAL_STATUSES,
    Attempt,
    Budget,
    GenerationRequest,
    InputImage,
    OutputImage,
    Route,
    Status,
    SubmissionKey,
    call_receipt,
    keep_payload,
    record_kept_call,
    store_partial,
)
from studio.pricing import money
from studio.thumbnails import thumbnail_name

log = logging.getLogger(__name__)

RETRYABLE = {"timeout", "rate_limit", "provider_5xx", "connection", "invalid_output"}
# Reasons retried fewer times than the route allows: a provider that sent a broken image
# once gets one more chance, not a loop of paid calls.
RETRY_LIMIT_BY_REASON = {"invalid_output": 1}
FALLBACK_REASONS = {"timeout", "rate_limit", "provider_5xx", "connection"}


@dataclass(frozen=True)
class RetryPlan:
    route: Route
    delay: float
    because: str


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def run_generation(request_id: str) -> None:
    request = GenerationRequest.objects.select_related("route").filter(pk=request_id).first()
    if request is None:
        log.warning("request %s: no such row, nothing to do", request_id)
        return
    if not request.claim():
        log.info(
            "request %s: already claimed (status %s), nothing to do", request_id, request.status
        )
        return

    route, routed_because = request.route_for_next_attempt()
    problem = route.configuration_problem()
    if problem:
        request.fail("route_unavailable", problem)
        log.warning("request %s failed before any call: %s", request_id, problem)
        return
    edit_inputs = None
    if request.is_edit:
        if not route.can_serve(request):
            request.fail("route_unavailable", f"Route {route.name} does not take this edit.")
            return
        try:
            edit_inputs = _read_edit_inputs(request)
        except Exception as error:
            log.exception("request %s: its input images could not be read", request_id)
            request.fail(
                "inputs_unavailable",
                f"The input images could not be read from storage ({error}); nothing was sent "
                "to the provider.",
            )
            return

    if not route.can_serve(request):
        request.fail("route_unavailable", f"Route {route.name} cannot serve this request.")
        return
    attempt = Attempt.begin_call(request, route, routed_because)
    if attempt is None:
        log.info("request %s ended before its call was sent; nothing sent", request_id)
        return
    started = time.monotonic()
    on_partial = _released(_partial_storer(request, attempt))
    on_event = _released(_lease_keeper(request, route))
    # The call waits seconds to minutes: its database connection goes back to the pool (or
    # is closed) meanwhile, so thousands of calls in flight hold none. Finishing reconnects.
    release_connection()
    try:
        if request.is_assistant_turn:
            result = imagegen.respond(
                route,
                request,
                request.previous_response_id or None,
                on_partial=on_partial,
                on_event=on_event,
            )
        elif edit_inputs is not None:
            result = imagegen.edit(
                route, request, edit_inputs, on_partial=on_partial, on_event=on_event
            )
        else:
            result = imagegen.generate(route, request, on_partial=on_partial, on_event=on_event)
    except imagegen.ImageGenError as error:
        _after_failed_call(request, attempt, error, started)
        return
    except Exception as error:
        # Whatever went wrong, the row must not stay "running" with an open attempt. The
        # request was sent, so the provider may have done (and billed) the work.
        log.exception("request %s: unexpected error during the call", request_id)
        unexpected = imagegen.ImageGenError(
            "unknown", f"Unexpected error: {error!r}", answer=Answer.NO_ANSWER
        )
        _after_failed_call(request, attempt, unexpected, started)
        return
    finish_paid_call(request, attempt, result, started, time.monotonic())


def finish_paid_call(request: GenerationRequest, attempt: Attempt, result, started, ended):
    """Record a call the provider answered with images: it is paid for, so it is never made
    again. Its payload goes to storage first (images and a receipt), before the database is
    even read, then the rows, each write surviving a dropped database connection; a worker
    lost in between leaves the receipt for the sweep to finish from. A request cancelled or
    given up meanwhile is settled by record_kept_call."""
    latency_ms = max(0, round((ended - started) * 1000))
    try:
        receipt = keep_payload(request, attempt, result, latency_ms)
    except Exception as error:
        log.exception("request %s: the call succeeded but storing its images failed", request.id)
        _with_fresh_connection_on_failure(
            partial(_end_unstored, request, attempt, result, latency_ms, error)
        )
        return
    ratios = _measure_drift(request, result.images) if _has_mask(request) else ()
    stored = _with_fresh_connection_on_failure(
        lambda: record_kept_call(request, attempt, receipt, drift=ratios)
    )
    attempt.refresh_from_db()
    log.info(
        "request %s %s: route_owner=%s model=%s->%s provider_request_id=%s "
        "output_tokens=%s cost=%s billing=%s latency_ms=%s stored=%s",
        request.id,
        request.status,
        attempt.route_owner,
        attempt.model_requested,
        attempt.model_sent,
        attempt.provider_request_id,
        attempt.output_image_tokens,
        attempt.cost,
        attempt.billing_label,
        attempt.latency_ms,
        [output.file.name for output in stored],
    )


def _has_mask(request: GenerationRequest) -> bool:
    try:
        return request.has_mask
    except (OperationalError, InterfaceError):
        return False  # the drift stays unknown; the images matter more


def _end_unstored(request, attempt, result, latency_ms: int, error: Exception) -> None:
    """The provider delivered (and billed) images that storage would not take: the attempt
    is billed from its usage, the request ends storage_failed, and it is not sent again.
    The designer reads what happened; the storage error itself is for admins, on the
    attempt."""
    with transaction.atomic():
        record_kept_call(request, attempt, call_receipt(request, result, latency_ms), finish=False)
        Attempt.objects.filter(pk=attempt.pk).update(
            error_message=f"Storage refused the images: {error!r}"
        )
        message = (
            f"The provider generated {len(result.images)} image(s), and billed them, but the "
            "studio's storage did not accept them, so they are lost. The request was not sent "
            "again, so nothing is paid twice; an admin can see the storage error on the "
            "attempt. Run it again once storage works."
        )
        if not request.fail("storage_failed", message):
            request.correct_given_up(Status.FAILED, "storage_failed", message)


def release_connection() -> None:
    """Give this thread's database connection back (to the psycopg pool on PostgreSQL, else
    closed) while it waits on something slow. Never inside a transaction: there the
    connection is kept (a task run inside a test's transaction, say)."""
    if not connection.in_atomic_block:
        connection.close()


def _released(callback):
    """`callback`, giving the database connection back after each call: a stream's
    callbacks write briefly between long waits for the next event."""

    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        finally:
            release_connection()

    return run


def _lease_keeper(request: GenerationRequest, route: Route):
    """Extend the request's lease while its call shows signs of life (a streamed event),
    at most every few seconds, so the sweep never declares a live stream dead."""
    every = max(1.0, settings.LEASE_GRACE_SECONDS / 4)
    last = time.monotonic()

    def keep_alive() -> None:
        nonlocal last
        if time.monotonic() - last < every:
            return
        last = time.monotonic()
        try:
            request.extend_lease(route)
        except Exception:
            log.warning("request %s: could not extend its lease", request.id, exc_info=True)

    return keep_alive


def _partial_storer(request: GenerationRequest, attempt: Attempt):
    """Store each streamed preview as it arrives, so the request page can show it while the
    call runs. A preview that cannot be stored is logged and skipped: the final image is
    what was asked for, and the stream must be read to its end."""

    def store(partial: imagegen.PartialImage) -> None:
        try:
            store_partial(request, attempt, partial)
        except Exception:
            log.exception("request %s: a partial preview could not be stored", request.id)

    return store


def _read_edit_inputs(request: GenerationRequest) -> imagegen.EditInputs:
    """The stored inputs, read again for this attempt; storage is tried a few times."""
    tries = max(1, settings.STORAGE_RETRIES)
    for number in range(1, tries + 1):
        try:
            inputs = list(request.inputs.all())
            images = [item.upload_tuple() for item in inputs if item.role != InputImage.Role.MASK]
            masks = [item.upload_tuple() for item in inputs if item.role == InputImage.Role.MASK]
            return imagegen.EditInputs(images=images, mask=masks[0] if masks else None)
        except Exception:
            if number == tries:
                raise
            log.warning("request %s: reading inputs failed (try %s)", request.id, number)
            time.sleep(min(2 ** (number - 1), 10))
    raise AssertionError("unreachable")


def _measure_drift(request: GenerationRequest, images: list) -> list[float | None]:
    """How much of the protected area each image changed. The images are paid for, so a
    failure here is logged and leaves the drift unknown; it never fails the request."""
    try:
        return drift.ratios(request, [image.data for image in images])
    except Exception:
        log.exception("request %s: the drift check failed; drift left unknown", request.id)
        return [None] * len(images)


def _with_fresh_connection_on_failure(write):
    """Run a database write; if the connection was lost (a restarted or killed backend),
    reconnect and run it again, a few times. Writes here are transactions that can run
    twice (a rolled-back one left nothing; a committed one is recognised and kept)."""
    tries = max(2, settings.STORAGE_RETRIES)
    for number in range(1, tries + 1):
        try:
            return write()
        except (OperationalError, InterfaceError):
            if number == tries:
                raise
            log.warning("database connection lost; reconnecting and writing again", exc_info=True)
            connection.close()
            time.sleep(min(2 ** (number - 1), 5) / 4)
    raise AssertionError("unreachable")


def _after_failed_call(
    request: GenerationRequest, attempt: Attempt, error: imagegen.ImageGenError, started: float
) -> None:
    ended = time.monotonic()
    _with_fresh_connection_on_failure(
        lambda: _settle_failure(request, attempt, error, started, ended)
    )


def _settle_failure(
    request: GenerationRequest,
    attempt: Attempt,
    error: imagegen.ImageGenError,
    started: float,
    ended: float,
) -> None:
    with transaction.atomic():
        attempt.record_failure(
            reason=error.reason,
            http_status=error.http_status,
            error_code=error.code,
            message=error.message,
            provider_request_id=error.provider_request_id,
            started=started,
            ended=ended,
            answer=error.answer,
            usage=error.usage,
        )
        if not request.is_still_running():
            # Cancelled, or given up by the sweep, while the call ran: what the call
            # really did replaces the guess, and the request's cost follows its attempts.
            outcome = "recorded on a request that had already ended"
            message = failure_message(request, attempt, error)
            late = f"{message} The answer came after the sweep had given the request up."
            if not request.correct_given_up(Status.FAILED, error.reason, late):
                request.recount_cost()
        elif error.is_policy:
            request.refuse(error.message)
            outcome = "refused"
        elif (plan := plan_retry(request, attempt, error)) is not None:
            request.schedule_retry(plan.route, plan.delay, plan.because)
            outcome = f"retry on {plan.route.name} in {plan.delay:.1f}s ({plan.because})"
        else:
            request.fail(error.reason, failure_message(request, attempt, error))
            outcome = "failed"
    log.info(
        "request %s attempt %s on %s failed: reason=%s status=%s provider_request_id=%s -> %s",
        request.id,
        attempt.number,
        attempt.route_owner,
        error.reason,
        error.http_status,
        error.provider_request_id,
        outcome,
    )


def failure_message(request: GenerationRequest, attempt: Attempt, error) -> str:
    """What the designer reads when a request ends failed: the provider's failure, how many
    calls were made, what they may have cost, and why it was not sent again."""
    parts = [error.message.rstrip(". ") + "."]
    attempts = request.attempts.count()
    if attempts > 1:
        parts.append(f"Tried {attempts} times.")
    cost, exposure = request.cost_and_exposure()
    if attempt.billing is Billing.POSSIBLY_BILLED:
        amount = f" up to {money(exposure)}" if exposure is not None else ""
        parts.append(
            f"The provider may have billed this call{amount}; it was not sent again, so "
            "nothing is paid twice."
        )
    elif attempt.billing is Billing.BILLED:
        parts.append(
            f"The provider billed this call ({money(cost) if cost is not None else 'unpriced'}); "
            "it was not sent again, so nothing is paid twice."
        )
    return " ".join(parts)


def plan_retry(
    request: GenerationRequest, attempt: Attempt, error: imagegen.ImageGenError
) -> RetryPlan | None:
    """The next attempt for a failed call, or None when the request should end.

    Policy, validation and size errors never retry. Timeouts, rate limits, 5xx and
    connection errors retry with exponential backoff and jitter (at least Retry-After),
    moving to the route's fallback when it has one that can serve the request.

    A request is sent again only while none of its attempts may have been billed. The one
    exception is a timeout on a route whose admin allows `timeout_retries`, and then only
    while what the request may already have cost plus another call fits every budget.
    """
    if error.reason not in RETRYABLE:
        return None
    attempts = list(request.attempts.all())
    if len(attempts) >= settings.MAX_ATTEMPTS_PER_REQUEST:
        return None
    history = [(a.cost_basis, a.retry_reason) for a in attempts]
    if not may_send_again(history, attempt.route.timeout_retries):
        return None
    if any(may_have_billed(basis) for basis, _ in history):
        _, exposure = request.cost_and_exposure()
        committed = None if exposure is None else exposure + (request.estimated_cost or 0)
        if committed is None or not Budget.fits(request.created_by, request, committed):
            return None
    same_reason = sum(1 for a in attempts if a.retry_reason == error.reason)
    if same_reason > RETRY_LIMIT_BY_REASON.get(error.reason, settings.MAX_ATTEMPTS_PER_REQUEST):
        return None

    def attempts_left(route: Route) -> bool:
        return sum(1 for a in attempts if a.route_id == route.pk) < route.max_attempts

    route = attempt.route
    fallback = route.fallback
    candidates = []
    # A follow-up turn continues a response stored by this route's provider; another
    # provider does not know that previous_response_id.
    continues_response = request.is_assistant_turn and bool(request.previous_response_id)
    if (
        error.reason in FALLBACK_REASONS
        and not continues_response
        and fallback is not None
        and fallback.pk != route.pk
        and fallback.configuration_problem() is None
        and fallback.can_serve(request)
    ):
        candidates.append((fallback, f"fallback from {route.name} after {error.reason}"))
    candidates.append((route, f"retry after {error.reason}"))
    for candidate, because in candidates:
        if attempts_left(candidate):
            return RetryPlan(candidate, backoff_seconds(len(attempts), error.retry_after), because)
    return None


def backoff_seconds(failed_attempts: int, retry_after: float | None = None) -> float:
    """Full-jitter exponential backoff, never sooner than the provider's Retry-After."""
    base = float(settings.RETRY_BASE_SECONDS)
    ceiling = min(float(settings.RETRY_MAX_SECONDS), base * 2 ** max(0, failed_attempts - 1))
    delay = random.uniform(base / 2, max(base / 2, ceiling))
    if retry_after is not None:
        delay = max(delay, min(retry_after, float(settings.RETRY_MAX_SECONDS)))
    return delay


@shared_task(ignore_result=True)
def sweep_requests() -> dict:
    """Send forgotten queued rows to the broker again and settle running rows whose worker is
    gone. Runs periodically (celery beat); safe to run anywhere, any number of times."""
    now = timezone.now()
    # A form's submission key only matters while someone may send it twice.
    SubmissionKey.objects.filter(created_at__lt=now - timedelta(days=1)).delete()
    stale = now - timedelta(seconds=settings.QUEUED_STALE_SECONDS)
    forgotten = GenerationRequest.objects.filter(status=Status.QUEUED, held=False).filter(
        Q(retry_at__isnull=True, created_at__lt=stale) | Q(retry_at__lt=stale)
    )
    requeued = 0
    for request in forgotten.only("id"):
        request.enqueue()
        requeued += 1
    settled = {
        "failed": 0,
        "finished": 0,
        "requeued": 0,
        "not stuck": 0,
        "errors": 0,
        "abandoned": 0,
    }

    def settle(request: GenerationRequest, work) -> None:
        # One row the sweep cannot settle (a broken receipt, say) must not hold the others.
        try:
            settled[work()] += 1
        except Exception:
            log.exception("sweep: request %s could not be settled; trying again later", request.pk)
            settled["errors"] += 1

    stuck = GenerationRequest.objects.filter(status=Status.RUNNING, lease_expires_at__lt=now)
    for request in stuck:
        settle(request, request.resolve_stuck)
    # A worker that outlived its lease may have kept its payload after the sweep gave the
    # request up, and died before writing the rows: finish those from their receipts.
    longest = settings.CELERY_TASK_TIME_LIMIT + settings.LEASE_GRACE_SECONDS
    given_up = GenerationRequest.objects.filter(
        status=Status.FAILED,
        failure_reason__in=LOST_CALL_REASONS,
        finished_at__gte=now - timedelta(seconds=2 * longest),
    ).exclude(outputs__kind=OutputImage.Kind.FINAL)
    for request in given_up:
        settle(request, lambda r=request: "finished" if r.finish_from_receipts() else "not stuck")
    # A cancelled request's last call is left to finish; if its worker vanished meanwhile,
    # the call can no longer end by itself. Once its task would have been killed, say so.
    orphans = Attempt.objects.filter(
        outcome=Attempt.Outcome.CALLING,
        request__status__in=TERMINAL_STATUSES,
        started_at__lt=now - timedelta(seconds=longest),
    )
    for attempt in orphans.select_related("request"):

        def abandon(attempt=attempt) -> str:
            # Its worker may have kept the payload before it died: then the call is known.
            if attempt.request.finish_from_receipts():
                return "finished"
            if attempt.mark_unknown():
                attempt.request.recount_cost()
                return "abandoned"
            return "not stuck"

        settle(attempt.request, abandon)
    abandoned = settled.pop("abandoned", 0)
    summary = {
        "sent_again": requeued,
        **{f"stuck_{k}": v for k, v in settled.items()},
        "abandoned_calls": abandoned,
    }
    if (
        requeued
        or abandoned
        or any(settled[k] for k in ("failed", "finished", "requeued", "errors"))
    ):
        log.warning("sweep: %s", summary)
    return summary


# Retention. A run stops after this long and the next run carries on.
RETENTION_TIME_BUDGET_SECONDS = 300
RETENTION_BATCH = 200


@shared_task(ignore_result=True)
def delete_expired_outputs() -> dict:
    """Delete the stored files of outputs past their delete-after date; keep every row.

    Runs periodically (celery beat). Each file is deleted through the storage API (local
    disk or S3), then its row gets deleted_at; the row, its path and SHA-256 and the attempt
    ledger stay as the record. A file already gone is not an error. Safe to run again, or
    twice at once: a row is marked only once.
    """
    # Imported here: this task was appended without touching the module's imports.
    from studio.models import OutputImage

    today = timezone.localdate()
    deadline = time.monotonic() + RETENTION_TIME_BUDGET_SECONDS
    expired = OutputImage.objects.filter(delete_after__lt=today, deleted_at__isnull=True)
    summary = {"deleted": 0, "failed": 0, "finished": True}
    last_pk = None
    while True:
        batch = expired.order_by("pk")
        if last_pk is not None:
            batch = batch.filter(pk__gt=last_pk)
        outputs = list(batch.only("pk", "file")[:RETENTION_BATCH])
        if not outputs:
            break
        for output in outputs:
            summary["deleted" if delete_output_file(output) else "failed"] += 1
        last_pk = outputs[-1].pk
        if time.monotonic() > deadline:
            summary["finished"] = False
            break
    if summary["deleted"] or summary["failed"]:
        log.info("retention: %s", summary)
    return summary


def delete_output_file(output) -> bool:
    """Delete one output's file through its storage and record when. False when the storage
    failed: the row stays unmarked and the next run tries again."""
    name = output.file.name
    try:
        if name:
            output.file.storage.delete(name)
        output.file.storage.delete(thumbnail_name(output.pk))  # the gallery's copy, if made
    except Exception:
        log.exception("retention: could not delete %s (output %s); will try again", name, output.pk)
        return False
    type(output).objects.filter(pk=output.pk, deleted_at__isnull=True).update(
        deleted_at=timezone.now()
    )
    return True
