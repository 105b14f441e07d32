"""A designer asks for partial previews and sees one appear before the final image."""

from __future__ import annotations

import pytest

from studio.models import GenerationRequest, OutputImage, Status
from tests.e2e.conftest import screenshot
from tests.e2e.test_generate_in_browser import log_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.e2e,
    pytest.mark.services,
    pytest.mark.usefixtures("ledger_checked"),
]


@pytest.fixture
def worker_media(celery_worker, settings):
    settings.MEDIA_ROOT = celery_worker.media_root
    return celery_worker


def test_a_preview_appears_before_the_final_image(
    page, live_server, live_sandbox, designer, worker_media
):
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.fill("#id_prompt", 'A shop window that says "PREVIEW" [sandbox:pace=1.5]')
    page.select_option("#id_quality", "low")
    page.fill("#id_partial_images", "2")
    page.click("#submit-request")
    page.wait_for_url("**/requests/*/")

    # The polling partial brings in the newest preview while the request is still running.
    page.wait_for_selector('[data-testid="preview"] img', timeout=20_000)
    assert page.get_attribute("[data-status]", "data-status") == "running"
    assert page.query_selector('img[alt^="Output 1"]') is None
    preview_width = page.wait_for_function(
        """() => {
            const img = document.querySelector('[data-testid="preview"] img');
            return img && img.complete && img.naturalWidth;
        }"""
    ).json_value()
    assert preview_width == 1024
    screenshot(page, "preview-while-running")

    page.wait_for_selector('[data-status="succeeded"]', timeout=30_000)
    page.wait_for_selector('img[alt^="Output 1"]')
    assert page.query_selector('[data-testid="preview"]') is None
    strip = page.inner_text('[data-testid="previews"]')
    assert "Partial previews (2)" in strip
    screenshot(page, "previews-after-final")

    generation = GenerationRequest.objects.get()
    assert generation.status == Status.SUCCEEDED
    assert generation.outputs.filter(kind=OutputImage.Kind.PARTIAL).count() == 2
