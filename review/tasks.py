"""Periodic work for the audit (celery beat)."""

from __future__ import annotations

import logging

from celery import shared_task

from review import rollups

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def refresh_audit_rollups() -> dict:
    """Sum the days that have settled since the last run into the audit's daily rollups."""
    summary = rollups.refresh()
    if summary["days"]:
        log.info("audit rollups: %s", summary)
    return summary
