"""Everyday use in real Chromium: the gallery of "My requests", downloads and the copy-ID
button, the keys (Ctrl/Cmd+Enter, `?`, the mask painter's undo/redo and brush size), and a
conversation's estimate before sending."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image, ImageDraw

from studio.models import Conversation, GenerationRequest, OutputImage
from studio.pricing import money
from tests.e2e.conftest import screenshot
from tests.e2e.test_edit_in_browser import choose
from tests.e2e.test_generate_in_browser import log_in
from tests.edit_fixtures import source_png
from tests.test_audit import make_attempt, make_request

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

COLOURS = [(220, 80, 60), (60, 140, 220), (90, 180, 90), (230, 180, 40), (140, 90, 200)]
PROMPTS = [
    'Poster that says "SPRING SALE"',
    'Hero image of a desk lamp, headline "LUMA"',
    'Menu card "Morning Ritual"',
    "Explainer diagram of a water filter",
    'Sticker "HELLO" on a laptop',
]


def picture(colour, text: str, size=(512, 512)) -> bytes:
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).text((24, size[1] // 2), text, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def add_output(generation, index: int, data: bytes) -> OutputImage:
    attempt = generation.attempts.first() or make_attempt(generation, 1)
    output = OutputImage(
        request=generation,
        attempt=attempt,
        index=index,
        sha256=f"{index:064d}",
        bytes=len(data),
        width=512,
        height=512,
        format="png",
    )
    output.file.save(f"{index:02d}.png", ContentFile(data), save=False)
    output.save()
    return output


@pytest.fixture
def requests_made(designer, sandbox_route):
    """Ten requests over ten hours: most with an image, the newest with three variants."""
    now = timezone.now()
    made = []
    for number in range(10):
        prompt = PROMPTS[number % len(PROMPTS)] + f" #{number}"
        generation = make_request(
            designer,
            sandbox_route,
            created_at=now - timedelta(hours=10 - number),
            prompt=prompt,
            n=3 if number == 9 else 1,
            status="failed" if number == 4 else "succeeded",
            estimated_cost=sandbox_route.estimate(
                prompt=prompt, width=1024, height=1024, quality="low"
            ).cost,
        )
        if number != 4:
            for index in range(generation.n):
                colour = COLOURS[(number + index) % len(COLOURS)]
                add_output(generation, index, picture(colour, f"{prompt} v{index + 1}"))
        made.append(generation)
    return made


def test_the_gallery_shows_thumbnails_searches_and_switches_to_a_table(
    page, live_server, designer, requests_made, settings
):
    settings.REQUESTS_PER_PAGE = 8
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.goto(live_server.url + reverse("studio:request-list"))
    tiles = page.locator('[data-testid="gallery"] .tile')
    assert tiles.count() == 8
    # Newest first, and every thumbnail (a 384 px WebP of the 512 px output) decoded.
    assert "#9" in tiles.first.inner_text()
    page.wait_for_function(
        """() => [...document.querySelectorAll('.tile img')]
               .every(img => img.complete && img.naturalWidth === 384)"""
    )
    screenshot(page, "gallery-grid")

    page.click('[data-testid="older"]')
    assert page.locator('[data-testid="gallery"] .tile').count() == 2

    page.goto(live_server.url + reverse("studio:request-list"))
    page.fill("#id_q", "Morning Ritual")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=gallery] .tile').length === 2"
    )
    assert "q=Morning%20Ritual" in page.url  # the search is in the address, to share or reload
    page.select_option("#id_status", "failed")
    page.locator('[data-testid="no-match"]').wait_for()
    page.fill("#id_q", "")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=gallery] .tile').length === 1"
    )
    assert "Failed" in page.inner_text('[data-testid="gallery"]')

    page.goto(live_server.url + reverse("studio:request-list"))
    page.click('[data-testid="table-view"]')
    page.locator('[data-testid="request-table"]').wait_for()
    assert page.locator('[data-testid="request-table"] tbody tr').count() == 8
    screenshot(page, "gallery-table")


def test_variants_download_with_their_names_and_the_id_copies(
    page, live_server, designer, requests_made
):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    newest = requests_made[-1]
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.goto(live_server.url + newest.get_absolute_url())
    variants = page.locator('[data-testid="variants"] > .variant')
    assert variants.count() == 3
    screenshot(page, "request-variants-downloads")

    with page.expect_download() as download_info:
        variants.nth(1).get_by_role("link", name="Download variant 2").click()
    download = download_info.value
    assert download.suggested_filename == f"generate-{newest.id}-2.png"
    assert Image.open(download.path()).size == (512, 512)

    page.get_by_role("button", name="Copy request ID").click()
    page.locator("button[data-copy]").filter(has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == str(newest.id)


def test_ctrl_enter_submits_the_composer_and_question_mark_lists_the_keys(
    page, live_server, sandbox_route, designer, monkeypatch
):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.fill("#id_prompt", 'A poster that says "OPEN"')
    expected = sandbox_route.estimate(
        prompt='A poster that says "OPEN"', width=1024, height=1024, quality="medium"
    )
    page.select_option("#id_quality", "medium")
    page.locator('[data-testid="total"]').filter(has_text=money(expected.cost)).wait_for()
    # A refused custom size: no estimate, and the error names the edge at fault.
    page.select_option("#id_size", "custom")
    page.fill("#id_width", "1024")
    page.fill("#id_height", "4096")
    page.locator('[data-testid="problems"]').filter(has_text="Height:").wait_for()
    assert page.locator('[data-testid="estimate"]').count() == 0
    screenshot(page, "composer-refused-size")
    page.select_option("#id_size", "1024x1024")
    page.locator('[data-testid="estimate"]').wait_for()
    screenshot(page, "composer-estimate")

    page.locator("body").click()
    page.keyboard.press("?")
    assert page.locator("#shortcut-help").is_visible()
    screenshot(page, "composer-shortcuts")
    page.keyboard.press("Escape")
    assert not page.locator("#shortcut-help").is_visible()

    page.focus("#id_prompt")
    page.keyboard.press("Control+Enter")
    page.wait_for_url("**/requests/*-*/")
    assert GenerationRequest.objects.count() == 1


def test_the_mask_painter_undoes_redoes_and_resizes_by_key(
    page, live_server, sandbox_route, designer, tmp_path
):
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.goto(live_server.url + reverse("studio:edit-new"))
    choose(page, "source", "room.png", source_png(), tmp_path)
    page.wait_for_selector("#painter-stage:not([hidden])")
    layer = page.locator("#paint-layer")
    box = layer.bounding_box()
    scale = box["width"] / 1024

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * scale, box["y"] + y * scale

    before = int(page.inner_text("#brush-size-shown"))
    page.keyboard.press("]")
    bigger = int(page.inner_text("#brush-size-shown"))
    page.keyboard.press("[")
    page.keyboard.press("[")
    assert bigger > before > int(page.inner_text("#brush-size-shown"))

    page.mouse.move(*at(300, 500))
    page.mouse.down()
    page.mouse.move(*at(700, 500), steps=12)
    page.mouse.up()

    def coverage() -> float:
        return float(page.get_attribute("#painter", "data-coverage") or 0)

    painted = coverage()
    assert painted > 0.01
    page.keyboard.press("Control+z")
    assert coverage() == 0
    page.keyboard.press("Control+Shift+Z")
    assert coverage() == pytest.approx(painted)
    # In the prompt, Ctrl+Z is the text's own undo, not the painter's.
    page.fill("#id_prompt", "a sign")
    page.focus("#id_prompt")
    page.keyboard.press("Control+z")
    assert coverage() == pytest.approx(painted)
    screenshot(page, "edit-painter-keys")


def test_a_conversation_shows_its_estimate_and_sends_with_ctrl_enter(
    page, live_server, sandbox_route, designer, monkeypatch
):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.goto(live_server.url + reverse("studio:conversation-new"))
    message = 'A shop sign that says "OPEN"'
    page.fill("#id_message", message)
    page.select_option("#id_quality", "high")
    cost = sandbox_route.estimate(prompt=message, width=1024, height=1024, quality="high").cost
    page.locator('[data-testid="turn-estimate"]').filter(has_text=money(cost)).wait_for()
    screenshot(page, "conversation-estimate")
    page.focus("#id_message")
    page.keyboard.press("Control+Enter")
    page.wait_for_url("**/conversations/*-*/")
    assert Conversation.objects.get().title == message
