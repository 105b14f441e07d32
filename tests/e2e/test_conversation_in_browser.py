"""A designer holds a two-turn conversation with the assistant in real Chromium."""

from __future__ import annotations

import pytest
from django.urls import reverse

from studio.models import Conversation, Status
from tests.e2e.conftest import screenshot
from tests.e2e.test_generate_in_browser import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.services]


@pytest.fixture
def worker_media(celery_worker, settings):
    settings.MEDIA_ROOT = celery_worker.media_root
    return celery_worker


def test_a_designer_asks_then_asks_for_a_change(
    page, live_server, live_sandbox, designer, worker_media
):
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.click("nav >> text=Conversations")
    page.click("text=Start a conversation")
    page.fill("#id_title", "Window poster")
    page.select_option("#id_quality", "low")
    page.fill("#id_message", 'Draw a shop window that says "OPEN" [sandbox:pace=0]')
    page.click("#start-conversation")
    page.wait_for_url("**/conversations/*/")

    page.wait_for_selector('[data-testid="assistant-text"]', timeout=30_000)
    page.wait_for_selector('img[alt="Image 1 of turn 1"]')
    page.fill("#id_message", 'Now add "SALE" under it [sandbox:pace=0]')
    page.click("#send-turn")
    page.wait_for_selector('img[alt="Image 1 of turn 2"]', timeout=30_000)
    screenshot(page, "conversation-two-turns")

    conversation = Conversation.objects.get()
    first, second = conversation.turns.order_by("created_at")
    assert (first.status, second.status) == (Status.SUCCEEDED, Status.SUCCEEDED)
    assert second.previous_response_id == first.response_id
    assert page.locator('[data-testid="turn"]').count() == 2
    assert reverse("studio:request-detail", args=[second.id]) in page.content()
