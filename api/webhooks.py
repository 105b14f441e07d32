"""Webhooks: what is sent, how it is signed, and where it may go.

Each delivery is a JSON body `{"id", "event", "created_at", "data"}` POSTed with headers
    X-Studio-Event: request.finished | review.decided
    X-Studio-Delivery: <delivery id>
    X-Studio-Timestamp: <unix seconds>
    X-Studio-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the hook's secret>
A receiver recomputes the HMAC over the timestamp and the raw body, compares in constant
time, and refuses old timestamps (replays). A 2xx answer is a delivery; anything else (or
no answer within WEBHOOK_TIMEOUT_SECONDS) is retried by Celery with exponential backoff,
WEBHOOK_MAX_ATTEMPTS tries in all. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.utils import timezone

from api.models import Webhook, WebhookDelivery

log = logging.getLogger(__name__)
DEFAULT_PORTS = {"http": 80, "https": 443}


def url_problem(url: str, studio_hosts: list[str]) -> str | None:
    """Why a hook may not use this URL (not http(s), or the studio itself); None when fine.

    `studio_hosts` are host[:port] names the studio answers on (the page's own host, and
    CSRF_TRUSTED_ORIGINS): a hook there would have the studio call itself."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        return f"Use an http:// or https:// URL ({parts.scheme or 'no'} scheme given)."
    if not parts.hostname:
        return "The URL has no host."
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return "The URL's port is not a number from 1 to 65535."
    for studio in studio_hosts:
        own = urlsplit("//" + studio)
        own_ports = {own.port} if own.port else set(DEFAULT_PORTS.values())
        if own.hostname and own.hostname == parts.hostname.lower() and port in own_ports:
            return "That URL is the studio itself: a webhook must point at another service."
    return None


def studio_hosts(request) -> list[str]:
    hosts = [request.get_host()]
    hosts += [urlsplit(origin).netloc for origin in settings.CSRF_TRUSTED_ORIGINS]
    return hosts


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def backoff_seconds(attempt: int) -> float:
    """Wait before try `attempt + 1`: base x 2^(attempt-1), at most WEBHOOK_RETRY_MAX_SECONDS."""
    base, most = settings.WEBHOOK_RETRY_BASE_SECONDS, settings.WEBHOOK_RETRY_MAX_SECONDS
    return min(most, base * 2 ** max(0, attempt - 1))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is an answer to record, never a hop to somewhere else


_opener = urllib.request.build_opener(_NoRedirects)


def attempt(delivery: WebhookDelivery) -> bool:
    """Send the delivery once and log the try; True when the receiver answered 2xx."""
    body = json.dumps(
        {
            "id": str(delivery.pk),
            "event": delivery.event,
            "created_at": delivery.created_at.isoformat(),
            "data": delivery.payload,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        delivery.webhook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "gpt-image-2-studio-webhooks/1",
            "X-Studio-Event": delivery.event,
            "X-Studio-Delivery": str(delivery.pk),
            "X-Studio-Timestamp": timestamp,
            "X-Studio-Signature": signature(delivery.webhook.secret, timestamp, body),
        },
    )
    started = time.monotonic()
    status, error = None, ""
    try:
        with _opener.open(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:
            status = response.status
            response.read(65536)
    except urllib.error.HTTPError as answer:
        status, error = answer.code, f"HTTP {answer.code}"
    except (OSError, ValueError) as problem:  # refused, timed out, DNS, a bad URL
        error = str(problem)[:500] or type(problem).__name__
    elapsed = round((time.monotonic() - started) * 1000)
    ok = status is not None and 200 <= status < 300
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=delivery.attempts + 1,
        response_status=status,
        response_ms=elapsed,
        error="" if ok else error,
        last_attempt_at=now,
        **({"status": WebhookDelivery.Status.SUCCEEDED, "delivered_at": now} if ok else {}),
    )
    delivery.refresh_from_db()
    return ok


def queue(hooks, event: str, payload: dict) -> list[WebhookDelivery]:
    """One delivery per hook, sent by the workers once the transaction commits."""
    from api.tasks import deliver_webhook

    deliveries = [
        WebhookDelivery.objects.create(webhook=hook, event=event, payload=payload) for hook in hooks
    ]
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: deliver_webhook.delay(pk))
    return deliveries


def hooks_for(user, event: str):
    return [
        hook for hook in Webhook.objects.filter(owner=user, active=True) if event in hook.events
    ]


def request_payload(generation) -> dict:
    return {
        "request": {
            "id": str(generation.id),
            "status": generation.status,
            "operation": generation.operation,
            "failure_reason": generation.failure_reason,
            "failure_message": generation.failure_message,
            "cost": None if generation.cost is None else str(generation.cost),
            "finished_at": generation.finished_at.isoformat() if generation.finished_at else None,
            "url": generation.get_absolute_url(),
            "api_url": f"/api/requests/{generation.id}",
            "outputs": [
                {"id": str(o.id), "file_url": f"/api/outputs/{o.id}/file"}
                for o in generation.outputs.filter(kind="final").order_by("index")
            ],
        }
    }


def on_request_ended(sender, request, **kwargs) -> None:
    hooks = hooks_for(request.created_by, Webhook.Event.REQUEST_FINISHED)
    if hooks:
        queue(hooks, Webhook.Event.REQUEST_FINISHED, request_payload(request))


def on_decision(sender, instance, created: bool, **kwargs) -> None:
    if not created:
        return
    try:
        generation = instance.request
        hooks = hooks_for(generation.created_by, Webhook.Event.REVIEW_DECIDED)
        if hooks:
            payload = {
                **request_payload(generation),
                "decision": {
                    "output": str(instance.output_id),
                    "verdict": instance.verdict,
                    "reason": instance.reason,
                    "reviewer": instance.reviewer.get_username(),
                    "created_at": instance.created_at.isoformat(),
                },
            }
            queue(hooks, Webhook.Event.REVIEW_DECIDED, payload)
    except Exception:  # a webhook must never stop a review decision
        log.exception("could not queue review.decided webhooks for decision %s", instance.pk)


def connect() -> None:
    from review.models import Decision
    from studio.models import request_ended

    request_ended.connect(on_request_ended, dispatch_uid="webhooks-request-ended")
    post_save.connect(on_decision, sender=Decision, dispatch_uid="webhooks-review-decided")
