"""Edits in real Chromium: the page's own checks before upload, and the mask painter."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image

from studio.models import GenerationRequest, Status
from tests.conftest import wait_for_terminal
from tests.e2e.conftest import screenshot
from tests.e2e.test_generate_in_browser import log_in
from tests.edit_fixtures import encoded, mask_png, refused_files, source_image, source_png

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PNG = "image/png"


@pytest.fixture
def previews(page) -> list[int]:
    """The body size of every live-preview request the page sends."""
    sizes: list[int] = []

    def record(request) -> None:
        if request.method == "POST" and request.url.endswith(reverse("studio:edit-preview")):
            sizes.append(len(request.post_data_buffer or b""))

    page.on("request", record)
    return sizes


@pytest.fixture
def submissions(page) -> list[str]:
    """Every form submission the page sends to the edit view (the live preview is apart)."""
    posts: list[str] = []

    def record(request) -> None:
        if request.method == "POST" and request.url.endswith(reverse("studio:edit-new")):
            posts.append(request.url)

    page.on("request", record)
    return posts


@pytest.fixture
def edit_page(page, live_server, sandbox_route, designer, submissions):
    """The edit page, logged in as the designer."""
    log_in(page, live_server, "dana", "pw-dana")
    page.wait_for_url("**/requests/new/")
    page.goto(live_server.url + reverse("studio:edit-new"))
    page.wait_for_selector("#painter:not([hidden])")
    return page


def choose(page, field: str, name: str, data: bytes, tmp_path, mime: str = PNG) -> None:
    """Choose a file for a field (from disk: Playwright refuses buffers over 50 MB)."""
    folder = tmp_path / str(len(list(tmp_path.iterdir())))  # a file once chosen stays as it is
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    page.set_input_files(f"input[name={field}]", str(path))


def problem_shown(page, field: str) -> str:
    slot = page.locator(f'[data-problem-for="{field}"]')
    slot.wait_for(state="visible")
    return slot.inner_text()


def test_a_mismatched_mask_is_refused_before_anything_is_uploaded(
    edit_page, submissions, previews, tmp_path
):
    page = edit_page
    photo = encoded(Image.effect_noise((1024, 1024), 90).convert("RGB"))  # about 2.5 MB
    choose(page, "source", "photo.png", photo, tmp_path)
    page.wait_for_selector("#painter-stage:not([hidden])")
    page.fill("#id_prompt", 'Put a sign that says "OPEN" in the window')
    # The live preview prices the source from its measured size; the file itself stays put.
    page.locator('[data-testid="input-image-tokens"]').wait_for()
    assert previews and max(previews) < 20_000
    choose(page, "mask", "mask.png", mask_png(512, 512, (0, 0, 100, 100)), tmp_path)

    message = problem_shown(page, "mask")
    assert message == (
        "The mask must have the same dimensions as the image (mask 512x512, image 1024x1024)."
    )
    assert page.is_disabled("#submit-edit")
    assert "Fix the problems" in page.inner_text('[data-testid="submit-status"]')
    screenshot(page, "edit-mismatched-mask")

    # Neither the button nor Enter in a field sends the form.
    page.click("#submit-edit", force=True)
    page.press("#id_n", "Enter")
    page.wait_for_timeout(300)
    assert submissions == []
    assert not GenerationRequest.objects.exists()

    # The right mask clears the error and the edit may go.
    choose(page, "mask", "mask.png", mask_png(), tmp_path)
    page.wait_for_selector('[data-problem-for="mask"]', state="hidden")
    page.wait_for_selector("#submit-edit:enabled")
    # The mask file is shown over the source: its transparent box, 512x320 of 1024x1024.
    status = page.locator('[data-testid="painter-status"]')
    status.filter(has_text="(from the mask file)").wait_for()
    assert status.inner_text().startswith("15.6% of the image is marked to change")


def test_every_upload_rule_is_checked_in_the_browser(edit_page, submissions, tmp_path):
    page = edit_page
    for case, field, name, data, message in refused_files():
        if field == "mask":
            choose(page, "source", "room.png", source_png(), tmp_path)
            page.wait_for_selector("#painter-stage:not([hidden])")
        choose(page, field, name, data, tmp_path, "image/jpeg" if name.endswith("jpg") else PNG)
        shown = problem_shown(page, field)
        assert message in shown, (case, shown)
        assert page.is_disabled("#submit-edit"), case
        page.set_input_files(f"input[name={field}]", [])
        page.wait_for_selector(f'[data-problem-for="{field}"]', state="hidden")

    choose(page, "source", "room.png", source_png(), tmp_path)
    small = encoded(source_image(64, 64))
    references = []
    for number in range(16):
        path = tmp_path / f"ref-{number}.png"
        path.write_bytes(small)
        references.append(str(path))
    page.set_input_files("input[name=references]", references)
    assert problem_shown(page, "references") == (
        "An edit takes at most 16 input images (17 given)."
    )
    assert page.is_disabled("#submit-edit")
    screenshot(page, "edit-too-many-references")
    assert submissions == []
    assert not GenerationRequest.objects.exists()


@pytest.mark.services
def test_a_designer_paints_a_mask_and_the_edit_succeeds(
    edit_page, live_sandbox, celery_worker, settings, tmp_path
):
    settings.MEDIA_ROOT = celery_worker.media_root
    page = edit_page
    choose(page, "source", "room.png", source_png(), tmp_path)
    page.wait_for_selector("#painter-stage:not([hidden])")
    assert page.is_enabled("#submit-edit")
    page.fill("#id_prompt", 'Put a sign that says "OPEN" in the window')

    # Paint a stroke across the middle of the picture, then undo a stray dot.
    layer = page.locator("#paint-layer")
    box = layer.bounding_box()
    scale = box["width"] / 1024

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * scale, box["y"] + y * scale

    page.fill("#brush-size", "80")
    page.mouse.move(*at(300, 500))
    page.mouse.down()
    page.mouse.move(*at(700, 500), steps=12)
    page.mouse.up()
    page.mouse.click(*at(100, 100))
    page.click("[data-action=undo]")
    coverage = float(page.get_attribute("#painter", "data-coverage"))
    assert 0.02 < coverage < 0.06  # a 400x80 stroke with round ends on a 1024x1024 image
    assert "of the image is marked to change" in page.inner_text('[data-testid="painter-status"]')
    screenshot(page, "edit-painted-mask")

    page.click("#submit-edit")
    page.wait_for_selector("[data-status]")
    generation = GenerationRequest.objects.get()
    assert str(generation.id) in page.url
    wait_for_terminal(generation)
    assert generation.status == Status.SUCCEEDED, generation.failure_message
    page.wait_for_selector('[data-status="succeeded"]')

    # The page made the mask: a PNG at the source's size, transparent where painted.
    mask_input = generation.mask_input
    assert (mask_input.width, mask_input.height, mask_input.format) == (1024, 1024, "png")
    with Image.open(io.BytesIO(default_storage.open(mask_input.file.name).read())) as mask:
        alpha = mask.getchannel("A")
        assert alpha.getpixel((500, 500)) == 0  # on the stroke
        assert alpha.getpixel((100, 100)) == 255  # the undone dot
        assert alpha.getpixel((500, 800)) == 255
        assert [level for level, count in enumerate(alpha.histogram()) if count] == [0, 255]

    output = generation.outputs.get()
    assert output.drift_ratio is not None and output.drift_ratio < 0.001
    page.wait_for_function(
        """() => { const img = document.querySelector('[data-testid="drift-heatmap"]');
                   return img && img.complete && img.naturalWidth > 0; }"""
    )
    assert page.inner_text('[data-testid="drift-figure"]') == "0.0%"
    page.click("[data-mode=slider]")
    assert page.is_visible(".compare-slider") and not page.is_visible(".compare-side")
    screenshot(page, "edit-succeeded")
