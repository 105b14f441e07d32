"""The composer, the edit page and the review page by keyboard alone: Tab reaches every
control in a sensible order, focus never lands on something hidden, and the work gets done
(a request is sent, a decision recorded) without the mouse."""

from __future__ import annotations

import pytest
from django.urls import reverse

from review.models import Decision
from studio.models import GenerationRequest
from tests.e2e.conftest import screenshot
from tests.e2e.test_generate_in_browser import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

FOCUSED = """() => {
    const el = document.activeElement;
    const box = el.getBoundingClientRect();
    return {
        id: el.id, name: el.getAttribute("name") || "", tag: el.tagName.toLowerCase(),
        text: (el.innerText || el.value || "").trim().slice(0, 40),
        visible: box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== "hidden",
    };
}"""


def tab_to(page, matches, limit: int = 80) -> list[dict]:
    """Press Tab until the focused element satisfies `matches`; every stop on the way must
    be visible. Returns the trail."""
    trail = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        trail.append(focused)
        assert focused["visible"], f"focus on a hidden element: {focused} after {trail[:-1]}"
        if matches(focused):
            return trail
    raise AssertionError(f"never reached the element; focus went {trail}")


def test_the_composer_by_keyboard_alone(page, live_server, sandbox_route, designer, monkeypatch):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.locator('[data-testid="estimate"]').wait_for()
    page.evaluate("document.activeElement.blur()")
    trail = tab_to(page, lambda f: f["name"] == "prompt")
    assert any(f["name"] == "frame" for f in trail)  # the frame comes before the prompt
    page.keyboard.type('A poster that says "KEYS"')
    trail = tab_to(page, lambda f: f["id"] == "submit-request")
    names = [f["name"] for f in trail]
    for field in ("route", "size", "quality", "output_format", "n"):
        assert field in names, f"Tab skipped {field}: {names}"
    screenshot(page, "composer-keyboard")
    page.keyboard.press("Enter")
    page.wait_for_url("**/requests/*-*/")
    assert GenerationRequest.objects.get().prompt == 'A poster that says "KEYS"'


def test_the_edit_page_by_keyboard_reaches_every_control(
    page, live_server, sandbox_route, designer
):
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.goto(live_server.url + reverse("studio:edit-new"))
    page.evaluate("document.activeElement.blur()")
    trail = tab_to(page, lambda f: f["id"] == "submit-edit" or f["name"] == "route", limit=120)
    names = {f["name"] for f in trail} | {f["id"] for f in trail}
    for control in ("source", "mask", "references", "prompt"):
        assert control in names, f"Tab skipped {control}: {trail}"


def test_the_review_page_by_keyboard_alone(page, live_server, objects, reviewer):
    log_in(page, live_server, "rita", "pw-rita")
    page.goto(live_server.url + reverse("review:output", args=[objects["output_id"]]))
    page.evaluate("document.activeElement.blur()")
    trail = tab_to(page, lambda f: f["name"] == "reason", limit=120)
    assert trail[-1]["tag"] == "textarea"
    page.keyboard.type("Colours are off")
    trail = tab_to(page, lambda f: f["name"] == "reject")
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    decision = Decision.objects.order_by("-created_at").first()
    assert decision.verdict == "rejected" and decision.reason == "Colours are off"
