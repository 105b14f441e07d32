"""Campaign tasks: release held rows from celery beat, and after each campaign row ends."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import task_postrun

from campaigns.scheduling import release_rows

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def release_campaign_rows() -> int:
    return release_rows()


@shared_task(ignore_result=True)
def submit_campaign_batch(campaign_id: str) -> None:
    from campaigns import batches
    from campaigns.models import Campaign

    campaign = Campaign.objects.select_related("route").filter(pk=campaign_id).first()
    if campaign is not None:
        batches.submit(campaign)


@shared_task(ignore_result=True)
def poll_campaign_batches() -> dict:
    from campaigns import batches

    return batches.poll()


@shared_task(ignore_result=True)
def publish_campaign(campaign_id: str) -> int:
    from campaigns import delivery
    from campaigns.models import Campaign

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    return 0 if campaign is None else delivery.publish(campaign)


@task_postrun.connect
def _release_after_a_row(sender=None, args=None, **kwargs) -> None:
    """A campaign row that ended frees a place: fill it now rather than at the next beat."""
    if getattr(sender, "name", "") != "studio.tasks.run_generation" or not args:
        return
    from studio.models import GenerationRequest

    try:
        if GenerationRequest.objects.filter(pk=args[0], campaign__isnull=False).exists():
            release_rows()
    except Exception:
        log.exception("campaigns: could not release rows after request %s", args[0])
