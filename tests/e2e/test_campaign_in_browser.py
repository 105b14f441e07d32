"""A designer checks a table, launches a campaign and watches it finish, in real Chromium."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign
from tests.e2e.conftest import screenshot
from tests.e2e.test_generate_in_browser import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.services]


@pytest.fixture
def worker_media(celery_worker, settings):
    settings.MEDIA_ROOT = celery_worker.media_root
    return celery_worker


def test_designer_checks_launches_and_watches_a_campaign(
    page, live_server, live_sandbox, designer, worker_media
):
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.click("text=Campaigns")
    page.click("text=New campaign")
    page.fill("#id_name", "Spring banners")
    page.fill("#id_template", 'A spring banner for {product} that says "{headline}"')
    page.fill(
        "#id_table",
        "product,headline,locale\nlamp,LUMA,de-DE\nchair,SIT,fr-FR\nsofa,REST,en-GB\n"
        "desk,WORK,999\n",
    )
    page.click("button[value=check]")
    problems = page.inner_text("[data-testid=table-problems]")
    assert "Row 4, column locale:" in problems
    screenshot(page, "campaign-table-problems")

    page.fill(
        "#id_table",
        "product,headline,locale\nlamp,LUMA,de-DE\nchair,SIT,fr-FR\nsofa,REST,en-GB\n",
    )
    page.click("button[value=check]")
    assert "3 rows, estimated at" in page.inner_text("[data-testid=campaign-total]")
    screenshot(page, "campaign-preview")
    assert not Campaign.objects.exists()

    page.click("button[value=launch]")
    page.wait_for_url("**/campaigns/*/")
    page.wait_for_selector("[data-testid=done]", timeout=60_000)
    assert "Succeeded: 3" in page.inner_text("[data-testid=progress]")
    page.reload()
    page.wait_for_function(
        """() => [...document.querySelectorAll(".contact img")].every(
            (img) => img.complete && img.naturalWidth > 0)"""
    )
    assert page.locator(".contact img").count() == 3
    screenshot(page, "campaign-done")
