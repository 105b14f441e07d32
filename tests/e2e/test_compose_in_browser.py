"""Compose from a frame in real Chromium: slots, live preview and estimate, then submit."""

from __future__ import annotations

import pytest

from studio.models import GenerationRequest
from tests.e2e.conftest import screenshot
from tests.e2e.test_generate_in_browser import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_designer_composes_from_a_frame_and_sees_the_estimate_move(
    page, live_server, sandbox_route, designer, seed_frames
):
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.select_option("select[name=frame]", label="Product hero")
    page.wait_for_selector("#id_slot_audience")
    # The frame's recommended settings arrive with its slots.
    assert page.input_value("#id_size") == "1536x1024"
    assert page.input_value("#id_quality") == "medium"

    page.fill("#id_slot_asset_type", "a landing-page hero image")
    page.fill("#id_slot_audience", "home-office workers")
    page.fill("#id_slot_subject", "a matte black desk lamp")
    page.fill("#id_slot_lighting_background", "soft daylight on pale gray")
    page.fill("#id_slot_headline", "LUMA")
    preview = page.locator('[data-testid="prompt-preview"]')
    preview.filter(has_text='Render the headline "LUMA" exactly as written.').wait_for()
    assert "Show a matte black desk lamp." in preview.inner_text()
    per_image = page.locator('[data-testid="per-image"]')
    per_image.filter(has_text="$0.0412").wait_for()

    page.select_option("#id_quality", "high")
    per_image.filter(has_text="$0.1646").wait_for()
    page.select_option("#id_size", "1024x1024")
    per_image.filter(has_text="$0.2107").wait_for()
    count = page.inner_text('[data-testid="char-count"]')
    assert count == f"{len(preview.inner_text())} / 32,000 characters"
    # Compression is only for JPEG and WebP; the custom size fields only for a custom size.
    assert page.is_disabled("#id_output_compression")
    assert not page.is_visible("#id_width")
    screenshot(page, "composer-product-hero")

    page.click("#submit-request")
    page.wait_for_url("**/requests/*/")
    generation = GenerationRequest.objects.get()
    assert generation.frame_version.frame.key == "product-hero"
    assert generation.expected_text_labels == ["LUMA"]
    assert str(generation.id) in page.inner_text("h1")
    assert "Product hero" in page.inner_text(".facts")
    screenshot(page, "composer-submitted")


def test_a_transparent_jpeg_is_flagged_by_the_page_and_refused_by_the_server(
    page, live_server, sandbox_route, designer
):
    sandbox_route.supports_transparent = True
    sandbox_route.save(update_fields=["supports_transparent"])
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.fill("#id_prompt", "a round logo")
    page.select_option("#id_background", "transparent")
    page.select_option("#id_output_format", "jpeg")
    note = page.locator('.field-background .client-error[data-rule="background"]')
    note.wait_for()
    assert note.inner_text().startswith("A transparent background needs PNG or WebP output")
    assert "JPEG has no transparency" in note.inner_text()
    screenshot(page, "composer-transparent-jpeg")
    page.select_option("#id_output_format", "webp")
    note.wait_for(state="detached")

    # The server holds the same rule, whatever the page lets through.
    page.select_option("#id_output_format", "jpeg")
    page.click("#submit-request")
    page.wait_for_selector(".field-background .errorlist")
    assert "PNG or WebP" in page.inner_text(".field-background .errorlist")
    assert not GenerationRequest.objects.exists()
