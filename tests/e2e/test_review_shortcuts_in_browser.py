"""Issue 15 in real Chromium: OCR flags a misspelt label in the queue before anyone opens it;
the reviewer works by keyboard; approval over the mismatch is refused without a reason and
recorded with one; the next output opens; the designer sees the override."""

from __future__ import annotations

import pytest

from review.models import Decision, OcrReading
from review.tasks import read_output_text
from studio.models import GenerationRequest, Status
from studio.tasks import run_generation
from tests.e2e.conftest import screenshot
from tests.e2e.test_generate_in_browser import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def generated(designer, route, prompt: str):
    generation = GenerationRequest.submit(
        created_by=designer,
        route=route,
        prompt=prompt,
        width=1536,
        height=1024,
        quality="low",
        output_format="png",
    )
    run_generation(str(generation.id))
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED, generation.failure_message
    output = generation.outputs.get(kind="final")
    # What the worker does after storing the output (the signal's task), done here in-line.
    read_output_text(str(output.id))
    return output


def test_keyboard_review_with_an_override(
    browser, live_server, live_sandbox, designer, reviewer, monkeypatch
):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    misspelt = generated(designer, live_sandbox, '[sandbox:typo] Poster "SUMMER SALE"')
    clean = generated(designer, live_sandbox, 'Poster "OPEN DAY"')
    assert OcrReading.objects.get(output=misspelt).suspects_mismatch
    assert not OcrReading.objects.get(output=clean).suspects_mismatch

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    log_in(page, live_server, "rita", "pw-rita")
    page.goto(live_server.url + "/review/")
    # Flagged before anyone opened it.
    assert page.locator('[data-testid="ocr-suspect"]').count() == 1
    page.click('[data-testid="filter-flagged-ocr"]')
    assert page.locator('[data-testid="queue"] > li').count() == 1
    screenshot(page, "review-queue-ocr-suspects")
    page.goto(live_server.url + "/review/")
    page.click('[data-testid="grid-view"]')
    assert "queue-grid" in page.get_attribute('[data-testid="queue"]', "class")
    screenshot(page, "review-queue-grid")
    page.click(f"text={misspelt.request_id}")
    page.wait_for_url(f"**/review/outputs/{misspelt.id}/")
    page.wait_for_selector("text=Pre-filled from OCR")
    observed = page.input_value("#id_observed_0")
    assert observed != "SUMMER SALE" and len(observed) == len("SUMMER SALE")

    page.keyboard.press("?")
    assert page.locator("#shortcut-help").is_visible()
    screenshot(page, "review-shortcut-help")
    page.keyboard.press("Escape")
    assert not page.locator("#shortcut-help").is_visible()

    # Verdict for label 1 by keyboard, then record the inspection.
    page.keyboard.press("1")
    page.keyboard.press("w")
    assert page.is_checked("input[name=verdict_0][value=wrong]")
    page.keyboard.press("s")
    page.wait_for_selector("text=Every expected label is inspected.")
    page.reload()

    # Approve with the button and no reason: refused, naming the label.
    page.click("button[name=approve]")
    page.wait_for_selector("text=wrong or missing")
    assert '"SUMMER SALE"' in page.inner_text(".decision-form")
    assert not Decision.objects.exists()
    screenshot(page, "review-override-refused")

    # By keyboard: `a` asks for the override reason first, then approves.
    page.keyboard.press("a")
    assert page.evaluate("document.activeElement.name") == "override_reason"
    page.keyboard.type("The client approved this spelling in writing")
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    page.wait_for_url(f"**/review/outputs/{clean.id}/")  # the next output opened
    assert "Approved over a text mismatch: output of request" in page.inner_text("main")
    decision = Decision.objects.get(output=misspelt)
    assert decision.over_text_mismatch and decision.mismatched_labels == ["SUMMER SALE"]
    assert decision.override_reason == "The client approved this spelling in writing"
    screenshot(page, "review-next-output-opened")
    context.close()

    designer_context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = designer_context.new_page()
    log_in(page, live_server, "dana", "pw-dana")
    page.goto(live_server.url + misspelt.request.get_absolute_url())
    status = page.inner_text('[data-testid="review-status"]')
    assert "approved over a text mismatch" in status.lower()
    assert "The client approved this spelling in writing" in status
    screenshot(page, "review-designer-sees-override")
    designer_context.close()
