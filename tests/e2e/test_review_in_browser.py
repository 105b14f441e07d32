"""A reviewer inspects two labels and approves in real Chromium; the designer sees it."""

from __future__ import annotations

import pytest

from studio.models import GenerationRequest, Status
from studio.tasks import run_generation
from tests.e2e.conftest import screenshot
from tests.e2e.test_generate_in_browser import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_reviewer_inspects_two_labels_approves_and_the_designer_sees_it(
    browser, live_server, live_sandbox, designer, reviewer, monkeypatch
):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    generation = GenerationRequest.submit(
        created_by=designer,
        route=live_sandbox,
        prompt='Poster with "SPRING SALE" and "Morning Ritual"',
        width=1536,
        height=1024,
        quality="low",
        output_format="png",
        expected_text_labels=["SPRING SALE", "Morning Ritual"],
    )
    run_generation(str(generation.id))
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    log_in(page, live_server, "rita", "pw-rita")
    page.goto(live_server.url + "/review/")
    page.click(f"text={generation.id}")
    page.wait_for_url("**/review/outputs/*/")
    # OCR pre-fills what the image reads; the reviewer confirms both rows.
    page.wait_for_selector("text=Pre-filled from OCR")
    assert page.input_value("#id_observed_0") == "SPRING SALE"
    assert page.input_value("#id_observed_1") == "Morning Ritual"
    page.check("input[name=verdict_0][value=exact]")
    page.check("input[name=verdict_1][value=exact]")
    page.click("button[name=inspect]")
    page.wait_for_selector("text=Every expected label is inspected.")
    screenshot(page, "review-inspected")
    page.click("button[name=approve]")
    page.wait_for_url("**/review/")
    assert "Approved" in page.inner_text("main")
    context.close()

    designer_context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = designer_context.new_page()
    log_in(page, live_server, "dana", "pw-dana")
    page.goto(live_server.url + generation.get_absolute_url())
    status = page.inner_text('[data-testid="review-status"]')
    assert "Approved by rita" in status
    assert "SPRING SALE" in status and "Exact" in status
    screenshot(page, "review-designer-sees-approval")
    designer_context.close()
