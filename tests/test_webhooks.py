"""Webhooks: signed deliveries to a loopback receiver, retried with backoff by Celery, logged
with status and time, replayable; URLs that are not http(s) or point at the studio refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from api import webhooks
from api.models import Webhook, WebhookDelivery
from api.tasks import deliver_webhook
from review.models import decide
from studio.models import GenerationRequest, OutputImage, Status
from tests.conftest import wait_for_terminal


class Receiver:
    """A loopback HTTP server that records each POST and answers the next queued status."""

    def __init__(self, statuses=(200,)) -> None:
        self.statuses = list(statuses)
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                status = (
                    receiver.statuses.pop(0)
                    if len(receiver.statuses) > 1
                    else (receiver.statuses[0])
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def verified(hook: Webhook, received: dict) -> dict:
    """The body, after checking the signature as a receiver would."""
    headers = received["headers"]
    timestamp = headers["X-Studio-Timestamp"]
    expected = hmac.new(
        hook.secret.encode(), timestamp.encode() + b"." + received["body"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers["X-Studio-Signature"], f"sha256={expected}")
    assert abs(time.time() - int(timestamp)) < 60
    return json.loads(received["body"])


def hook_for(user, url: str, events=("request.finished", "review.decided")) -> Webhook:
    return Webhook.objects.create(
        owner=user, url=url, events=list(events), secret=Webhook.new_secret()
    )


@pytest.fixture
def eager(monkeypatch):
    """Run deliveries in-process (retries included) instead of on the broker."""
    monkeypatch.setattr(deliver_webhook, "delay", lambda pk: deliver_webhook.apply(args=[pk]))


# --- Where a hook may point ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://studio.example.com/hook", "the studio itself"),
        ("https://studio.example.com:443/hook", "the studio itself"),
        ("http://127.0.0.1:8000/api/", "the studio itself"),
        ("http://127.0.0.1:9000/hook", None),
        ("https://hooks.example.org/x", None),
    ],
)
def test_url_rules(url, problem):
    found = webhooks.url_problem(url, ["studio.example.com", "127.0.0.1:8000"])
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.django_db
def test_the_page_refuses_the_studio_and_shows_a_new_secret_once(client, designer, settings):
    settings.ALLOWED_HOSTS = ["studio.example.com"]
    client.defaults["HTTP_HOST"] = "studio.example.com"
    client.force_login(designer)
    page = reverse("webhooks:list")
    response = client.post(
        page, {"url": "http://studio.example.com/hook", "events": "request.finished"}
    )
    assert "the studio itself" in str(response.context["form"].errors["url"])
    response = client.post(page, {"url": "ftp://x.org/", "events": "request.finished"})
    assert response.context["form"].errors["url"]
    response = client.post(
        page, {"url": "https://hooks.example.org/studio", "events": ["review.decided"]}
    )
    [hook] = Webhook.objects.all()
    assert hook.secret in response.content.decode()
    assert hook.secret not in client.get(page).content.decode()
    assert hook.events == ["review.decided"]


# --- Deliveries ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_finished_request_is_delivered_signed(
    designer, sandbox_route, receiver, eager, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    hook = hook_for(designer, receiver.url)
    generation = GenerationRequest.submit(
        created_by=designer,
        route=sandbox_route,
        prompt="p",
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert generation.claim()
        generation.fail("server_error", "The provider failed.")
    [received] = receiver.received
    body = verified(hook, received)
    assert received["headers"]["X-Studio-Event"] == "request.finished"
    assert body["data"]["request"]["id"] == str(generation.id)
    assert body["data"]["request"]["status"] == "failed"
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.status == "succeeded" and delivery.attempts == 1
    assert delivery.response_status == 200 and delivery.response_ms is not None


@pytest.mark.django_db
def test_failures_are_retried_with_backoff_then_logged(designer, eager, settings, monkeypatch):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    receiver = Receiver(statuses=(500, 503, 200))
    waits = []
    original = webhooks.backoff_seconds
    monkeypatch.setattr(webhooks, "backoff_seconds", lambda n: waits.append(original(n)) or 0)
    try:
        hook = hook_for(designer, receiver.url)
        [delivery] = webhooks.queue([hook], "request.finished", {"x": 1})
        deliver_webhook.delay(delivery.pk)
    finally:
        receiver.close()
    delivery.refresh_from_db()
    assert len(receiver.received) == 3
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 3, 200)
    base = settings.WEBHOOK_RETRY_BASE_SECONDS
    assert waits == [base, base * 2]


@pytest.mark.django_db
def test_a_receiver_that_never_answers_well_is_given_up(designer, eager, settings, monkeypatch):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    monkeypatch.setattr(webhooks, "backoff_seconds", lambda n: 0)
    hook = hook_for(designer, "http://127.0.0.1:9/nothing-listens")
    [delivery] = webhooks.queue([hook], "request.finished", {"x": 1})
    deliver_webhook.delay(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("failed", 2, None)
    assert delivery.error


@pytest.mark.django_db
def test_a_review_decision_is_delivered_and_replayable(
    client, objects, designer, reviewer, receiver, eager, django_capture_on_commit_callbacks
):
    hook = hook_for(designer, receiver.url, events=["review.decided"])
    output = OutputImage.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        decide(output, reviewer, "rejected", "too dark")
    [received] = receiver.received
    body = verified(hook, received)
    assert body["event"] == "review.decided"
    assert body["data"]["decision"] == {
        **body["data"]["decision"],
        "verdict": "rejected",
        "reason": "too dark",
        "reviewer": reviewer.username,
    }
    [delivery] = hook.deliveries.all()
    client.force_login(designer)
    page = client.get(reverse("webhooks:detail", args=[hook.pk])).content.decode()
    assert "review.decided" in page and "HTTP 200" in page and " ms" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("webhooks:replay", args=[hook.pk, delivery.pk]))
    assert len(receiver.received) == 2
    assert json.loads(receiver.received[1]["body"])["data"] == body["data"]
    replay = hook.deliveries.exclude(pk=delivery.pk).get()
    assert replay.replay_of == delivery and replay.status == "succeeded"


@pytest.mark.django_db
def test_nobody_else_sees_or_replays_a_hooks_log(client, designer, other_designer):
    hook = hook_for(designer, "https://hooks.example.org/x")
    [delivery] = webhooks.queue([hook], "request.finished", {"x": 1})
    client.force_login(other_designer)
    assert client.get(reverse("webhooks:detail", args=[hook.pk])).status_code == 404
    replay = client.post(reverse("webhooks:replay", args=[hook.pk, delivery.pk]))
    assert replay.status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.usefixtures("ledger_checked")
def test_a_real_worker_delivers_when_a_request_finishes(
    celery_worker, settings, live_sandbox, designer, receiver
):
    settings.MEDIA_ROOT = celery_worker.media_root
    hook = hook_for(designer, receiver.url)
    generation = GenerationRequest.submit(
        created_by=designer,
        route=live_sandbox,
        prompt='A sign that says "HI"',
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    wait_for_terminal(generation)
    assert generation.status == Status.SUCCEEDED
    deadline = time.monotonic() + 30
    while not receiver.received:
        assert time.monotonic() < deadline, "no delivery arrived"
        time.sleep(0.1)
    body = verified(hook, receiver.received[0])
    assert body["data"]["request"]["status"] == "succeeded"
    assert len(body["data"]["request"]["outputs"]) == 1
    deadline = time.monotonic() + 10
    while WebhookDelivery.objects.get().status != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
