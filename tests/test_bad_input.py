"""The bad-input matrix: each hostile case an attack on the studio found, kept as a test.

Every case answers with a form error naming the field and the rule, a 4xx with a readable
message, or the page itself; never a 500, never a message that contradicts itself.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image

from review.forms import DecisionForm
from studio import imagerules
from studio.models import Conversation, GenerationRequest, OutputImage, Status
from studio.uploads import Role, UploadRejected, eight_bit, read_input_image, read_mask
from tests.edit_fixtures import encoded, mask_png, png_bomb, png_chunk, source_png, upload

pytestmark = pytest.mark.django_db

CONTROL_MESSAGE = "control character"


def text_of(response) -> str:
    return response.content.decode().replace("\xa0", " ")


@pytest.fixture
def enqueue_nothing(monkeypatch):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)


# --- NUL and other control characters --------------------------------------------------


@pytest.mark.parametrize(
    ("role", "url", "query"),
    [
        ("designer", "studio:request-new", {"frame": "\x00"}),
        ("designer", "studio:edit-new", {"frame": "a\x00"}),
        ("reviewer", "review:queue", {"designer": "\x00"}),
        ("admin", "audit:dashboard", {"user": "\x1b"}),
        # DEL and the C1 controls too (a new-user walk: NEL and CSI in the gallery search).
        ("designer", "studio:request-list", {"q": "a\x7f"}),
        ("designer", "studio:request-list", {"q": "a\x85b"}),
        ("designer", "studio:request-list", {"q": "\x9b31m"}),
    ],
)
def test_a_control_character_in_a_query_is_a_400_with_a_message(
    client, designer, reviewer, admin_user, role, url, query
):
    client.force_login({"designer": designer, "reviewer": reviewer, "admin": admin_user}[role])
    response = client.get(reverse(url), query)
    assert response.status_code == 400
    assert CONTROL_MESSAGE in text_of(response)


def test_a_nul_in_a_form_value_is_a_400(client, designer, sandbox_route):
    client.force_login(designer)
    response = client.post(reverse("studio:request-new"), {"prompt": "a poster\x00"})
    assert response.status_code == 400
    assert "“prompt”" in text_of(response)


def test_tabs_and_newlines_in_a_text_area_are_kept(
    client, designer, sandbox_route, enqueue_nothing
):
    client.force_login(designer)
    form = {"size": "1024x1024", "quality": "low", "output_format": "png", "n": "1"}
    prompt = 'A poster\r\n\twith "SALE"\non it'
    response = client.post(
        reverse("studio:request-new"),
        {**form, "background": "auto", "route": sandbox_route.pk, "prompt": prompt},
    )
    assert response.status_code == 302
    assert GenerationRequest.objects.get().prompt == prompt.strip()


def test_a_nul_in_a_login_is_a_400(client, designer):
    response = client.post(reverse("login"), {"username": "dana\x00", "password": "x"})
    assert response.status_code == 400


@pytest.mark.parametrize("url", ["login", "admin:login"])
def test_a_control_character_in_a_header_or_a_long_login_name_is_a_4xx_or_a_form_error(
    client, designer, url
):
    refused = client.post(
        reverse(url), {"username": "dana", "password": "x"}, headers={"User-Agent": "a\x00b"}
    )
    assert refused.status_code == 400
    assert "User-Agent" in text_of(refused)
    # Longer than any user name: a form error, never handed to the lockout's records.
    long_name = client.post(reverse(url), {"username": "d" * 1000, "password": "x"})
    assert long_name.status_code == 200
    assert "at most 150 characters" in text_of(long_name)


def test_a_digit_that_int_cannot_read_is_no_frame(client, designer):
    client.force_login(designer)
    assert client.get(reverse("studio:request-new"), {"frame": "²"}).status_code == 200
    assert client.get(reverse("studio:edit-new"), {"frame": "²"}).status_code == 200


# --- Dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["audit:dashboard", "audit:attempts", "audit:export"])
@pytest.mark.parametrize(
    "query",
    [
        {"end": "9999-12-31"},
        {"start": "0001-01-01", "end": ""},
        {"start": "0001-01-01", "end": "9999-12-31"},
        {"start": "9999-12-31", "end": ""},
    ],
)
def test_far_dates_on_the_audit_are_a_form_error(client, admin_user, url, query):
    client.force_login(admin_user)
    response = client.get(reverse(url), query)
    assert response.status_code == 200
    if url != "audit:export":
        assert "Choose a date between" in text_of(response)


@pytest.mark.parametrize(
    "query",
    [
        {"attempt_time__year": "9999", "attempt_time__month": "12", "attempt_time__day": "31"},
        {"attempt_time__year": "9999", "attempt_time__month": "12"},
        {"attempt_time__year": "9999"},
        {"attempt_time__gte": "9999-12-31"},
    ],
)
def test_far_dates_in_the_admins_date_hierarchy_are_a_bad_lookup(client, admin_user, query):
    admin_user.is_superuser = True
    admin_user.save(update_fields=["is_superuser"])
    client.force_login(admin_user)
    response = client.get(reverse("admin:axes_accessattempt_changelist"), query)
    assert response.status_code in (200, 302)


# --- Image decodes ---------------------------------------------------------------------


def region_of(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_a_region_that_declares_a_huge_size_is_a_form_error(client, reviewer, objects):
    output = OutputImage.objects.get(pk=objects["output_id"])
    form = DecisionForm(
        {"reason": "bluer", "region": region_of(png_bomb(100_000, 100_000))},
        output=output,
        action="request_changes",
    )
    assert not form.is_valid()
    assert "64x64" in form.errors["region"][0]
    client.force_login(reviewer)
    response = client.post(
        reverse("review:decide", args=[output.id]),
        {"reason": "bluer", "region": region_of(png_bomb(100_000, 100_000)), "request_changes": ""},
    )
    assert response.status_code == 200
    assert "The region must be 64x64" in text_of(response)


def test_a_region_just_over_pillows_warning_limit_is_a_form_error(objects):
    output = OutputImage.objects.get(pk=objects["output_id"])
    # Between Pillow's warning and error limits: refused from the header, never decoded.
    bomb = png_bomb(Image.MAX_IMAGE_PIXELS // 4000 + 1, 4000)
    form = DecisionForm(
        {"reason": "x", "region": region_of(bomb)}, output=output, action="request_changes"
    )
    assert not form.is_valid()
    assert "The region must be 64x64" in form.errors["region"][0]


# --- HEAD ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["studio:output-file", "studio:input-file", "studio:output-drift"])
def test_head_on_a_file_view_answers_like_get(client, designer, objects, url):
    client.force_login(designer)
    key = "input_id" if url == "studio:input-file" else "output_id"
    path = reverse(url, args=[objects[key]])
    got, head = client.get(path), client.head(path)
    assert got.status_code == 200
    assert head.status_code == got.status_code
    assert head["Content-Type"] == got["Content-Type"]
    assert body_of(head) == b""


def body_of(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def test_head_on_pages(client, designer, admin_user, objects):
    client.force_login(designer)
    assert client.head(reverse("studio:request-new")).status_code == 200
    assert (
        client.head(reverse("studio:request-detail", args=[objects["request_id"]])).status_code
        == 200
    )
    client.force_login(admin_user)
    assert client.head(reverse("audit:dashboard")).status_code == 200
    assert client.head(reverse("healthz")).status_code == 200


# --- Upload messages -------------------------------------------------------------------

EDIT_FORM = {
    "size": "source",
    "quality": "low",
    "output_format": "png",
    "background": "auto",
    "n": "1",
    "prompt": 'A sign that says "OPEN"',
}


def post_edit(client, route, **fields):
    return client.post(reverse("studio:edit-new"), {**EDIT_FORM, "route": route.pk, **fields})


def test_a_bad_mask_is_one_error_on_the_mask(client, designer, sandbox_route):
    client.force_login(designer)
    opaque = encoded(Image.new("RGB", (1024, 1024), "white"))
    response = post_edit(
        client,
        sandbox_route,
        source=upload("room.png", source_png()),
        mask=upload("mask.png", opaque),
    )
    form = response.context["form"]
    assert list(form.errors) == ["mask"]
    assert "Choose a source image, or a size." not in text_of(response)


def test_a_bomb_mask_is_named_as_too_many_pixels():
    source = read_input_image(io.BytesIO(source_png()), len(source_png()), "s.png", Role.SOURCE)
    bomb = png_bomb(20_000, 20_000)
    with pytest.raises(UploadRejected) as refusal:
        read_mask(io.BytesIO(bomb), len(bomb), "mask.png", source)
    message = str(refusal.value)
    assert "too many pixels" in message and "400,000,000" in message
    assert "not a readable image" not in message


def test_a_mask_just_over_4_mb_is_told_figures_that_differ():
    size = round(4.002 * 1024 * 1024)
    problems = imagerules.mask_problems(1024, 1024, "png", True, size, 1024, 1024)
    assert problems == ["The mask must be smaller than 4 MB (it is 4.002 MB)."]
    one_byte_over = imagerules.MAX_MASK_BYTES + 1
    (problem,) = imagerules.mask_problems(1024, 1024, "png", True, one_byte_over, 1024, 1024)
    assert "4,194,304 bytes" in problem and "4,194,305 bytes" in problem


def test_a_mask_over_4_mb_on_the_form_names_its_size(client, designer, sandbox_route):
    client.force_login(designer)
    padded = mask_png() + b"\x00" * (round(4.002 * 1024 * 1024) - len(mask_png()))
    response = post_edit(
        client,
        sandbox_route,
        source=upload("room.png", source_png()),
        mask=upload("mask.png", padded),
    )
    assert response.context["form"].errors == {
        "mask": ["The mask must be smaller than 4 MB (it is 4.002 MB)."]
    }


# --- Pixel modes ---------------------------------------------------------------------------

MID_GREY = 128
# Lab's mid-grey is L* = 50, which sRGB writes as 119.
GREY_OF_MODE = {
    "1": None,  # two tones only: black stays black, white stays white
    "L": (128, MID_GREY),
    "LA": ((128, 255), MID_GREY),
    "La": ((128, 255), MID_GREY),
    "P": (None, MID_GREY),
    "PA": (None, MID_GREY),
    "I;16": (32896, MID_GREY),
    "I;16B": (32896, MID_GREY),
    "I;16L": (32896, MID_GREY),
    "I": (32896, MID_GREY),
    "F": (128.0, MID_GREY),
    "RGB": ((128, 128, 128), MID_GREY),
    "RGBA": ((128, 128, 128, 255), MID_GREY),
    "RGBX": ((128, 128, 128, 0), MID_GREY),
    "RGBa": ((128, 128, 128, 255), MID_GREY),
    "CMYK": ((0, 0, 0, 127), MID_GREY),
    "YCbCr": ((128, 128, 128), MID_GREY),
    "LAB": ((128, 128, 128), 119),
    "HSV": ((0, 0, 128), MID_GREY),
}


def grey_image(mode: str) -> Image.Image:
    colour, _ = GREY_OF_MODE[mode]
    if mode in ("P", "PA"):
        image = Image.new(mode, (8, 8), 0 if mode == "P" else (0, 255))
        image.putpalette([128, 128, 128] * 256)
        if mode == "P":
            image.info["transparency"] = 7
        return image
    return Image.new(mode, (8, 8), colour)


@pytest.mark.parametrize("mode", [mode for mode, grey in GREY_OF_MODE.items() if grey])
def test_a_mid_grey_of_every_mode_stays_mid_grey(mode):
    converted = eight_bit(grey_image(mode))
    assert converted.mode in ("L", "LA", "RGB", "RGBA")
    value = converted.convert("RGB").getpixel((4, 4))
    _, expected = GREY_OF_MODE[mode]
    assert all(abs(channel - expected) <= 2 for channel in value), (mode, value)


def test_two_tone_images_keep_their_tones():
    image = Image.new("1", (8, 8), 0)
    image.putpixel((1, 1), 1)
    converted = eight_bit(image)
    assert converted.getpixel((0, 0)) == 0 and converted.getpixel((1, 1)) == 255


def test_a_16_bit_grey_ramp_upload_keeps_its_tones():
    ramp = Image.linear_gradient("L").resize((1024, 1024)).convert("I")
    ramp16 = ramp.point(lambda value: value * 257).convert("I;16")
    data = encoded(ramp16)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    checked = read_input_image(io.BytesIO(data), len(data), "ramp.png", Role.SOURCE)
    stored = Image.open(io.BytesIO(checked.data)).convert("L")
    histogram = stored.histogram()
    white_share = histogram[255] / (1024 * 1024)
    assert white_share < 0.01
    assert abs(stored.getpixel((512, 512)) - 128) <= 2


# --- Transparent background --------------------------------------------------------------


COMPOSER_FORM = {
    "prompt": "a logo",
    "size": "1024x1024",
    "quality": "low",
    "n": "1",
    "background": "transparent",
}


def test_the_rule_allows_transparency_with_png_and_webp_only():
    assert imagerules.background_problems("transparent", "png") == []
    assert imagerules.background_problems("transparent", "webp") == []
    assert imagerules.background_problems("auto", "jpeg") == []
    (problem,) = imagerules.background_problems("transparent", "jpeg")
    assert "PNG or WebP" in problem
    rules = imagerules.rules_for_browser()
    assert rules["transparent_formats"] == ["png", "webp"]
    assert rules["setting_messages"]["transparent_format"]


def test_transparent_jpeg_is_a_form_error_on_the_composer(client, designer, sandbox_route):
    sandbox_route.supports_transparent = True
    sandbox_route.save()
    client.force_login(designer)
    response = client.post(
        reverse("studio:request-new"),
        {**COMPOSER_FORM, "output_format": "jpeg", "route": sandbox_route.pk},
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "PNG or WebP" in errors["background"][0]
    assert GenerationRequest.objects.count() == 0


def test_transparent_jpeg_is_a_form_error_on_the_edit_page(client, designer, sandbox_route):
    sandbox_route.supports_transparent = True
    sandbox_route.save()
    client.force_login(designer)
    response = post_edit(
        client,
        sandbox_route,
        background="transparent",
        output_format="jpeg",
        source=upload("room.png", source_png()),
    )
    assert "PNG or WebP" in response.context["form"].errors["background"][0]


def test_the_composer_page_carries_the_transparency_rule(client, designer, sandbox_route):
    client.force_login(designer)
    page = text_of(client.get(reverse("studio:request-new")))
    assert 'id="image-rules"' in page
    assert "transparent_formats" in page


# --- Lockout and floods ------------------------------------------------------------------


def test_the_lockout_message_is_in_words(client, designer, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(3):
        response = client.post(reverse("login"), {"username": "dana", "password": "wrong"})
    assert response.status_code == 429
    page = text_of(response)
    assert "Try again in 15 minutes" in page
    assert "PT15M" not in page


def test_a_conversation_over_the_submission_limit_answers_429(
    client, designer, sandbox_route, settings, enqueue_nothing
):
    settings.SUBMISSIONS_PER_MINUTE = 1
    client.force_login(designer)
    start = {
        "title": "t",
        "route": sandbox_route.pk,
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "partial_images": "0",
        "message": "a poster",
    }
    assert client.post(reverse("studio:conversation-new"), start).status_code == 302
    response = client.post(reverse("studio:conversation-new"), start)
    assert response.status_code == 429
    assert "at most 1 a minute" in text_of(response)
    conversation = Conversation.objects.get()
    conversation.turns.update(status=Status.SUCCEEDED)  # answered: the next turn may go
    turn = client.post(
        reverse("studio:conversation-turn", args=[conversation.id]), {"message": "bluer"}
    )
    assert turn.status_code == 429
    assert "at most 1 a minute" in text_of(turn)


def test_a_16_bit_output_is_measured_and_a_bomb_output_is_a_404(client, designer, objects):
    output = OutputImage.objects.get(pk=objects["output_id"])
    grey16 = encoded(Image.new("I;16", (64, 64), 32896))
    output.file.save("grey16.png", ContentFile(grey16), save=True)
    client.force_login(designer)
    drift = client.get(reverse("studio:output-drift", args=[output.id]))
    assert drift.status_code == 200
    output.file.save("bomb.png", ContentFile(png_bomb(100_000, 100_000)), save=True)
    assert client.get(reverse("studio:output-drift", args=[output.id])).status_code == 404


def sixteen_bit_png(color_type: int, samples: tuple[int, ...], size: int = 8) -> bytes:
    """A PNG with 16 bits a sample, written by hand (Pillow writes only 16-bit grey)."""
    pixel = b"".join(struct.pack(">H", sample) for sample in samples)
    rows = b"".join(b"\x00" + pixel * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("case", "color_type", "samples"),
    [
        ("16-bit grey", 0, (32896,)),
        ("16-bit grey with alpha", 4, (32896, 65535)),
        ("16-bit RGB", 2, (32896, 32896, 32896)),
        ("16-bit RGBA", 6, (32896, 32896, 32896, 65535)),
    ],
)
def test_a_16_bit_png_upload_keeps_its_mid_grey(case, color_type, samples):
    data = sixteen_bit_png(color_type, samples, size=1024)
    checked = read_input_image(io.BytesIO(data), len(data), "grey.png", Role.SOURCE)
    stored = Image.open(io.BytesIO(checked.data)).convert("RGB")
    assert all(abs(channel - MID_GREY) <= 2 for channel in stored.getpixel((9, 9))), case
