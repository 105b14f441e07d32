"""Periodic work for the audit (celery beat)."""

from __future__ import annotations

import logging

from celery import shared_task

from review import rollups
from review.models import OcrReading
from studio.models import OutputImage

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def refresh_audit_rollups() -> dict:
    """Sum the days that have settled since the last run into the audit's daily rollups."""
    summary = rollups.refresh()
    if summary["days"]:
        log.info("audit rollups: %s", summary)
    return summary


@shared_task(ignore_result=True)
def read_output_text(output_id: str) -> None:
    """OCR one stored output before anyone opens it, so the queue can flag suspects."""
    output = (
        OutputImage.objects.filter(pk=output_id, kind=OutputImage.Kind.FINAL)
        .select_related("request")
        .first()
    )
    if output is None or output.deleted_at is not None:
        return
    if OcrReading.read(output) is None:
        log.info("OCR could not read output %s (tesseract missing or file gone)", output_id)
