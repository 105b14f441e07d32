"""Campaigns sent through OpenAI's Batch API: within 24 h, at the batch price tier.

`submit` claims a campaign's waiting rows, opens one Attempt per row (each line is a call
of its own, with its own usage and cost) and uploads them as one JSONL batch (custom_id =
request ID). `poll` (celery beat) asks after every open batch; once it is over, `settle`
downloads the output and error files and ends each row from its own line:

- a 200 line: its images kept and recorded as any paid call (studio.models.keep_payload /
  record_kept_call), priced at the batch tier;
- an error answer (4xx/5xx in the error file): not billed, the row failed with the
  provider's message;
- a line error (batch_expired, server_error ...): never run, not billed;
- a line that cannot be read, or no line at all: the call may have been run and billed,
  so the attempt is possibly billed and the row ends in a named state
  (batch_output_unreadable, batch_line_missing). It is never sent again by itself.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Campaign, CampaignBatch
from studio import imagegen
from studio.billing import Answer
from studio.models import (
    Attempt,
    GenerationRequest,
    PriceSheet,
    Status,
    keep_payload,
    record_kept_call,
)
from studio.pricing import read_usage

log = logging.getLogger(__name__)

# A batch has 24 hours; its rows stay with it a little longer before the sweep may judge.
BATCH_LEASE = timedelta(hours=25)
CUSTOM_ID = re.compile(r'"custom_id"\s*:\s*"([^"]{1,100})"')
SETTLE_CLAIM = timedelta(minutes=15)
LINE_ERROR_REASONS = {"batch_expired": "timeout", "server_error": "provider_5xx"}


def submit(campaign: Campaign) -> CampaignBatch | None:
    """Send the campaign's waiting rows as one batch; None when none wait."""
    route = campaign.route
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            GenerationRequest.objects.select_for_update(skip_locked=True)
            .filter(campaign=campaign, held=True, status=Status.QUEUED)
            .order_by("campaign_row")
        )
        if not rows:
            return None
        GenerationRequest.objects.filter(pk__in=[row.pk for row in rows]).update(
            status=Status.RUNNING, held=False, started_at=now, lease_expires_at=now + BATCH_LEASE
        )
        attempts = [Attempt.begin(row, route, "batch") for row in rows]
    lines = [imagegen.batch_line(row) for row in rows]
    try:
        input_file_id, batch_id = imagegen.submit_batch(
            route, lines, {"campaign": str(campaign.id)}
        )
    except imagegen.ImageGenError as error:
        log.warning("campaign %s: the batch was refused: %s", campaign.id, error)
        for row, attempt in zip(rows, attempts, strict=True):
            _end_failed(
                row,
                attempt,
                error.reason,
                error.http_status,
                error.code,
                error.message,
                error.answer,
            )
        return None
    return CampaignBatch.objects.create(
        campaign=campaign,
        route=route,
        input_file_id=input_file_id,
        batch_id=batch_id,
        lines=len(lines),
    )


def poll() -> dict:
    """Ask after every open batch; settle those that are over."""
    counts = {"open": 0, "settled": 0, "errors": 0}
    for batch in CampaignBatch.objects.filter(settled_at__isnull=True).select_related("route"):
        try:
            state = imagegen.batch_state(batch.route, batch.batch_id)
        except imagegen.ImageGenError as error:
            log.warning("batch %s: could not be retrieved: %s", batch.batch_id, error)
            counts["errors"] += 1
            continue
        CampaignBatch.objects.filter(pk=batch.pk).update(
            provider_status=state.status, polled_at=timezone.now()
        )
        if not state.is_over:
            counts["open"] += 1
            continue
        now = timezone.now()
        claimed = (
            CampaignBatch.objects.filter(pk=batch.pk, settled_at__isnull=True)
            .filter(Q(settling_since__isnull=True) | Q(settling_since__lt=now - SETTLE_CLAIM))
            .update(settling_since=now)
        )
        if not claimed:
            continue  # another poller is settling it
        try:
            settle(batch, state)
        except imagegen.ImageGenError as error:
            log.warning("batch %s: its files could not be read: %s", batch.batch_id, error)
            CampaignBatch.objects.filter(pk=batch.pk).update(settling_since=None)  # next poll
            counts["errors"] += 1
            continue
        counts["settled"] += 1
    return counts


def _lines(data: bytes) -> tuple[dict[str, dict], set[str]]:
    """The lines of an output or error file by custom_id, and the custom_ids of lines that
    could not be read (found in what is left of them)."""
    by_id: dict[str, dict] = {}
    unreadable: set[str] = set()
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            if not isinstance(item, dict):
                raise ValueError("not an object")
            by_id[str(item["custom_id"])] = item
        except (ValueError, KeyError, TypeError):
            found = CUSTOM_ID.search(raw.decode("utf-8", "replace"))
            if found:
                unreadable.add(found.group(1))
    return by_id, unreadable


def settle(batch: CampaignBatch, state: imagegen.BatchState) -> None:
    """End every row of an ended batch from its own line; the rest go on whatever one does."""
    output, unreadable = _lines(imagegen.batch_file(batch.route, state.output_file_id))
    errors, unreadable_errors = _lines(imagegen.batch_file(batch.route, state.error_file_id))
    unreadable |= unreadable_errors
    rows = GenerationRequest.objects.filter(
        campaign=batch.campaign,
        attempts__routed_because="batch",
        attempts__outcome=Attempt.Outcome.CALLING,
        created_at__lte=batch.created_at,
    ).select_related("route")
    latency_ms = max(0, round((timezone.now() - batch.created_at).total_seconds() * 1000))
    for request in rows.distinct():
        attempt = request.attempts.filter(outcome=Attempt.Outcome.CALLING).last()
        key = str(request.id)
        try:
            if key in output:
                _settle_line(request, attempt, output[key], latency_ms)
            elif key in errors:
                _settle_line(request, attempt, errors[key], latency_ms)
            elif key in unreadable:
                _possibly_billed(
                    request,
                    attempt,
                    "batch_output_unreadable",
                    "The batch's line for this row could not be read; the provider may have "
                    "run and billed it. It is not sent again by itself.",
                )
            elif state.status != "completed":
                # A batch that expired, failed or was cancelled leaves out the lines it never
                # ran: those are not billed.
                _end_failed(
                    request,
                    attempt,
                    "timeout" if state.status == "expired" else "unknown",
                    None,
                    f"batch_{state.status}",
                    f"The batch ended {state.status} before this row ran; nothing was billed.",
                    Answer.NOT_SENT,
                )
            else:
                _possibly_billed(
                    request,
                    attempt,
                    "batch_line_missing",
                    f"The batch ended ({state.status}) without a line for this row; the "
                    "provider may have run and billed it. It is not sent again by itself.",
                )
        except Exception:
            log.exception("batch %s: row %s could not be settled", batch.batch_id, key)
    CampaignBatch.objects.filter(pk=batch.pk).update(
        settled_at=timezone.now(), provider_status=state.status
    )


def _settle_line(request, attempt, line: dict, latency_ms: int) -> None:
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    error = line.get("error") if isinstance(line.get("error"), dict) else None
    if response is not None and response.get("status_code") == 200:
        try:
            result = imagegen.batch_line_result(response, request)
        except imagegen.ImageGenError as problem:
            _end_failed(
                request,
                attempt,
                problem.reason,
                200,
                problem.code,
                problem.message,
                Answer.INCOMPLETE,
                problem.usage,
                problem.provider_request_id,
            )
            return
        receipt = keep_payload(request, attempt, result, latency_ms, tier=PriceSheet.Tier.BATCH)
        record_kept_call(request, attempt, receipt)
        return
    if response is not None:
        body = response.get("body") if isinstance(response.get("body"), dict) else {}
        detail = body.get("error") if isinstance(body.get("error"), dict) else {}
        status = (
            response.get("status_code") if isinstance(response.get("status_code"), int) else None
        )
        code = str(detail.get("code") or "")
        reason = (
            "policy"
            if code == "moderation_blocked"
            else (
                "rate_limit"
                if status == 429
                else "provider_5xx"
                if (status or 0) >= 500
                else "validation"
            )
        )
        _end_failed(
            request,
            attempt,
            reason,
            status,
            code,
            str(detail.get("message") or "The provider refused this line."),
            Answer.ERROR,
            read_usage(body.get("usage")) if body.get("usage") else None,
            str(response.get("request_id") or ""),
        )
        return
    code = str((error or {}).get("code") or "unknown")
    _end_failed(
        request,
        attempt,
        LINE_ERROR_REASONS.get(code, "unknown"),
        None,
        code,
        str((error or {}).get("message") or "The line failed."),
        Answer.NOT_SENT,
    )


def _end_failed(
    request, attempt, reason, http_status, code, message, answer, usage=None, provider_request_id=""
) -> None:
    now = time.monotonic()
    with transaction.atomic():
        attempt.record_failure(
            reason=reason if reason in Attempt.RetryReason.values else "unknown",
            http_status=http_status,
            error_code=code,
            message=message,
            provider_request_id=provider_request_id,
            started=now,
            ended=now,
            answer=answer,
            usage=usage,
        )
        if not request.fail(reason, message):
            request.recount_cost()  # cancelled meanwhile: its cost follows the attempt


def _possibly_billed(request, attempt, state: str, message: str) -> None:
    with transaction.atomic():
        attempt.mark_unknown(message)
        if not request.fail(state, message):
            request.recount_cost()


def cancel_open_batches(campaign: Campaign) -> None:
    """Ask the provider to stop the campaign's batches still open; their rows are settled
    by poll as the batches end (what already ran is paid for and recorded)."""
    for batch in campaign.batches.filter(settled_at__isnull=True).select_related("route"):
        try:
            imagegen.cancel_batch(batch.route, batch.batch_id)
        except imagegen.ImageGenError as error:
            log.warning("batch %s: could not be cancelled: %s", batch.batch_id, error)
