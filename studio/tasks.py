"""Celery tasks: take an id, claim the row, call imagegen, record what happened on the row."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.db import transaction

from studio import imagegen
from studio.models import Attempt, GenerationRequest, store_output

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
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

    route = request.route
    problem = route.configuration_problem()
    if problem:
        request.fail("route_unavailable", problem)
        log.warning("request %s failed before any call: %s", request_id, problem)
        return

    attempt = Attempt.begin(request, route)
    started = time.monotonic()
    try:
        result = imagegen.generate(route, request)
    except imagegen.ImageGenError as error:
        _record_failed_call(request, attempt, error, started)
        return
    except Exception as error:
        # Whatever went wrong, the row must not stay "running" with an open attempt.
        log.exception("request %s: unexpected error during the call", request_id)
        unexpected = imagegen.ImageGenError("unknown", f"Unexpected error: {error!r}")
        _record_failed_call(request, attempt, unexpected, started)
        return

    attempt.record_success(
        usage=result.usage,
        provider_request_id=result.provider_request_id,
        http_status=result.http_status,
        started=started,
        ended=time.monotonic(),
    )
    try:
        stored = [store_output(request, attempt, i, image) for i, image in enumerate(result.images)]
    except Exception as error:
        log.exception("request %s: the call succeeded but storing its images failed", request_id)
        request.fail(
            "storage_failed",
            f"The images were generated (and billed) but could not be stored: {error}",
        )
        return
    request.succeed(attempt)
    log.info(
        "request %s succeeded: route_owner=%s model=%s->%s provider_request_id=%s "
        "output_tokens=%s cost=%s latency_ms=%s stored=%s",
        request_id,
        attempt.route_owner,
        attempt.model_requested,
        attempt.model_sent,
        attempt.provider_request_id,
        attempt.output_image_tokens,
        attempt.cost,
        attempt.latency_ms,
        [output.file.name for output in stored],
    )


def _record_failed_call(
    request: GenerationRequest, attempt: Attempt, error: imagegen.ImageGenError, started: float
) -> None:
    with transaction.atomic():
        attempt.record_failure(
            reason=error.reason,
            http_status=error.http_status,
            error_code=error.code,
            message=error.message,
            provider_request_id=error.provider_request_id,
            started=started,
            ended=time.monotonic(),
            billed_usage=error.billed_usage,
        )
        if error.is_policy:
            request.refuse(error.message)
        else:
            request.fail(error.reason, error.message)
    log.info(
        "request %s attempt %s failed: reason=%s status=%s provider_request_id=%s",
        request.id,
        attempt.number,
        error.reason,
        error.http_status,
        error.provider_request_id,
    )
