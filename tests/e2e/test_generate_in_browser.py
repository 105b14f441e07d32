"""A designer logs in, submits a prompt and watches it finish, in real Chromium."""

from __future__ import annotations

import pytest
from django.urls import reverse

from studio.models import GenerationRequest, Status
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.services]


@pytest.fixture
def worker_media(celery_worker, settings):
    settings.MEDIA_ROOT = celery_worker.media_root
    return celery_worker


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(live_server.url + reverse("login"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_designer_submits_and_watches_the_request_finish(
    page, live_server, live_sandbox, designer, worker_media
):
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.fill(
        "#id_prompt", 'A clean product poster with the headline "SPRING SALE" [sandbox:latency=2]'
    )
    page.select_option("#id_size", "1536x1024")
    page.select_option("#id_quality", "medium")
    page.select_option("#id_output_format", "webp")
    page.click("#submit-request")
    page.wait_for_url("**/requests/*/")

    generation = GenerationRequest.objects.get()
    assert str(generation.id) in page.content()
    # The page polls by itself: the running state shows before the end, without a reload.
    page.wait_for_selector('[data-status="running"]', timeout=15_000)
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.wait_for_selector('[data-status="succeeded"]', timeout=30_000)
    assert navigations == []

    # The image arrives through the access-checked file view; wait until it has decoded.
    natural_width = page.wait_for_function(
        """() => {
            const img = document.querySelector("figure.output img");
            return img && img.complete && img.naturalWidth;
        }"""
    ).json_value()
    assert natural_width == 1536
    text = page.inner_text("#progress")
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED
    output = generation.outputs.get()
    assert output.file.name in text
    assert output.sha256 in text
    assert "simulated" in text
    assert f"{generation.output_tokens:,} output tokens" in text
    assert f"{generation.latency_ms} ms" in text
    screenshot(page, "request-succeeded")

    page.click("text=My requests")
    page.wait_for_selector('[data-testid="gallery"]')
    page.click('[data-testid="table-view"]')
    page.wait_for_selector("table.ledger")
    assert str(generation.id) in page.inner_text("table.ledger")


def test_a_size_mistake_is_shown_next_to_the_field(page, live_server, live_sandbox, designer):
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.fill("#id_prompt", "A poster")
    page.select_option("#id_size", "custom")
    page.fill("#id_width", "1000")
    page.fill("#id_height", "1000")
    page.click("#submit-request")
    page.wait_for_selector(".errorlist")
    assert "multiples of 16" in page.inner_text(".errorlist")
    assert not GenerationRequest.objects.exists()
    screenshot(page, "size-error")
