"""Webhook deliveries, sent by the Celery workers and retried with exponential backoff."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from api import webhooks
from api.models import WebhookDelivery

log = logging.getLogger(__name__)


@shared_task(bind=True, ignore_result=True, max_retries=None)
def deliver_webhook(self, delivery_id: int) -> str:
    """Try one delivery; on failure schedule the next try, up to WEBHOOK_MAX_ATTEMPTS."""
    delivery = (
        WebhookDelivery.objects.select_related("webhook")
        .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
        .first()
    )
    if delivery is None:
        return "gone"
    if webhooks.attempt(delivery):
        return "delivered"
    if delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.FAILED)
        log.info("webhook delivery %s failed after %s tries", delivery.pk, delivery.attempts)
        return "failed"
    raise self.retry(countdown=webhooks.backoff_seconds(delivery.attempts))
