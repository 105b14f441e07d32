"""The sandbox's images/edits endpoint and the upload and mask rules it shares with the studio.

Called over a real socket with the real openai SDK, which sends multipart/form-data.
"""

from __future__ import annotations

import io
import json
import os
import struct
import urllib.error
import urllib.request
import zlib

import openai
import pytest
from openai import OpenAI
from PIL import Image, ImageChops, ImageDraw, ImageStat

from studio import imagerules, pricing
from studio.sandbox.edits import input_image_tokens
from studio.sandbox.render import fit_to_size
from tests.openapi import assert_matches_schema
from tests.sandbox_helpers import decode, png_bytes

pytestmark = pytest.mark.django_db(transaction=True)

HOLE = (256, 320, 768, 640)  # the transparent (editable) box of the standard mask
PROMPT = 'Put a sign that says "OPEN" in the window'


@pytest.fixture
def client(live_server) -> OpenAI:
    return OpenAI(base_url=live_server.url + "/sandbox/v1", api_key="sandbox", max_retries=0)


@pytest.fixture
def endpoint(live_server) -> str:
    return live_server.url + "/sandbox/v1/images/edits"


def source_image(width: int = 1024, height: int = 1024) -> Image.Image:
    """A busy, deterministic picture: edits of it show where pixels changed."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for step in range(0, max(width, height), 64):
        draw.line((step, 0, 0, step), fill=(200, 40, 90), width=9)
        draw.rectangle((step, step // 2, step + 20, step // 2 + 20), fill=(20, 160, 220))
    return image


def encoded(image: Image.Image, pillow_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, pillow_format)
    return buffer.getvalue()


def mask_png(width: int = 1024, height: int = 1024, hole: tuple = HOLE) -> bytes:
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((hole[0], hole[1], hole[2] - 1, hole[3] - 1), fill=(0, 0, 0, 0))
    return png_bytes(mask)


def outside(image: Image.Image, hole: tuple = HOLE) -> Image.Image:
    """The image with the hole painted black, so only pixels outside it count."""
    copy = image.convert("RGB")
    ImageDraw.Draw(copy).rectangle((hole[0], hole[1], hole[2] - 1, hole[3] - 1), fill=0)
    return copy


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    return sum(ImageStat.Stat(difference).mean) / 3


def edit_raw(client: OpenAI, **params) -> dict:
    params.setdefault("model", "gpt-image-2")
    params.setdefault("prompt", PROMPT)
    return json.loads(client.images.with_raw_response.edit(**params).text)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims this size, with almost no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


SOURCE = source_image()
SOURCE_PNG = png_bytes(SOURCE)
MASK_PNG = mask_png()


def test_it_changes_only_the_transparent_area_of_the_mask(client):
    body = edit_raw(
        client, image=("room.png", SOURCE_PNG, "image/png"), mask=("mask.png", MASK_PNG)
    )

    assert_matches_schema(body, "ImagesResponse")
    edited = decode(body["data"][0]["b64_json"])
    assert (edited.format, edited.size, body["size"]) == ("PNG", (1024, 1024), "1024x1024")
    # Lossless output: every pixel outside the hole is exactly the source's.
    assert ImageChops.difference(outside(edited), outside(SOURCE)).getbbox() is None
    inside = edited.convert("RGB").crop(HOLE)
    assert mean_difference(inside, SOURCE.crop(HOLE)) > 20
    # The label is drawn dark on a light panel inside the hole.
    assert inside.convert("L").getextrema()[0] < 40


def test_it_fits_the_source_and_the_mask_to_another_output_size(client):
    body = edit_raw(
        client,
        image=("room.png", SOURCE_PNG, "image/png"),
        mask=("mask.png", MASK_PNG),
        size="1536x1024",
        quality="low",
    )

    edited = decode(body["data"][0]["b64_json"]).convert("RGB")
    assert edited.size == (1536, 1024)
    fitted = fit_to_size(SOURCE, 1536, 1024)
    hole = fit_to_size(
        Image.open(io.BytesIO(MASK_PNG)).getchannel("A").point([255] + [0] * 255),
        1536,
        1024,
        resample=Image.Resampling.NEAREST,
    )
    untouched = Image.new("L", edited.size, 255)
    untouched.paste(0, (0, 0), hole)
    changed = ImageChops.difference(edited, fitted).convert("L").point(lambda v: 255 if v else 0)
    assert ImageChops.multiply(changed, untouched).getbbox() is None
    assert changed.getbbox() is not None


def test_it_ignores_the_mask_when_told_like_a_careless_gateway(client):
    body = edit_raw(
        client,
        image=("room.png", SOURCE_PNG, "image/png"),
        mask=("mask.png", MASK_PNG),
        prompt=PROMPT + " [sandbox:ignore-mask]",
    )

    edited = decode(body["data"][0]["b64_json"])
    assert edited.size == (1024, 1024)
    assert mean_difference(outside(edited), outside(SOURCE)) > 15


def test_without_a_mask_the_whole_image_changes_but_keeps_the_source(client):
    result = client.images.edit(
        model="gpt-image-2", image=("room.png", SOURCE_PNG, "image/png"), prompt=PROMPT
    )

    edited = decode(result.data[0].b64_json)
    assert edited.size == (1024, 1024)
    difference = mean_difference(outside(edited), outside(SOURCE))
    assert 5 < difference < 80  # tinted all over, still recognisably the source
    unrelated = Image.new("RGB", (1024, 1024), (128, 128, 128))
    assert difference < mean_difference(outside(edited), outside(unrelated))


def test_it_reports_input_image_tokens_per_image(client):
    small = png_bytes(source_image(512, 768))
    result = client.images.edit(
        model="gpt-image-2",
        image=[("a.png", SOURCE_PNG, "image/png"), ("b.png", small, "image/png")],
        prompt=PROMPT,
        quality="medium",
        output_format="webp",
        output_compression=80,
    )

    image_tokens = input_image_tokens(1024, 1024) + input_image_tokens(512, 768)
    text_tokens = pricing.estimate_text_tokens(PROMPT)
    output_tokens = pricing.estimate_output_tokens(1024, 1024, "medium")
    assert input_image_tokens(1024, 1024) == 765  # 4 tiles of 512 after scaling to 768
    assert result.usage.input_tokens_details.image_tokens == image_tokens
    assert result.usage.input_tokens_details.text_tokens == text_tokens
    assert result.usage.input_tokens == image_tokens + text_tokens
    assert result.usage.output_tokens == output_tokens
    assert result.usage.total_tokens == image_tokens + text_tokens + output_tokens
    assert decode(result.data[0].b64_json).format == "WEBP"


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(1536, 1024, (1536, 1024)), (1000, 1000, (1024, 1024)), (640, 480, (1024, 1024))],
)
def test_auto_size_is_the_first_images_size_when_legal(client, width, height, expected):
    result = client.images.edit(
        model="gpt-image-2",
        image=("a.jpg", encoded(source_image(width, height), "JPEG"), "image/jpeg"),
        prompt="x",
        size="auto",
        quality="low",
    )

    assert decode(result.data[0].b64_json).size == expected


def test_it_accepts_webp_and_jpeg_inputs_and_varies_n_images(client):
    result = client.images.edit(
        model="gpt-image-2",
        image=[
            ("a.webp", encoded(SOURCE, "WEBP"), "image/webp"),
            ("b.jpg", encoded(SOURCE, "JPEG"), "image/jpeg"),
        ],
        prompt=PROMPT,
        n=2,
        quality="low",
    )

    assert len({item.b64_json for item in result.data}) == 2


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "Missing required parameter: 'image'."),
        (
            [("x.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png")],
            "Invalid image file or mode for image 1, please check your image file.",
        ),
        (
            [("x.png", b"<!doctype html><title>x</title>", "image/png")],
            "Invalid image file or mode for image 1",
        ),
        ([("x.png", SOURCE_PNG[: len(SOURCE_PNG) // 2], "image/png")], "for image 1"),
        ([("x.png", encoded(Image.new("P", (64, 64)), "GIF"), "image/png")], "for image 1"),
        (
            [("a.png", SOURCE_PNG, "image/png"), ("b.png", b"not an image", "image/png")],
            "for image 2",
        ),
        ([("bomb.png", png_claiming(20_000, 20_000), "image/png")], "pixels"),
        ([("big.png", png_claiming(8000, 5000), "image/png")], "33,177,600 "),
    ],
    ids=["none", "svg", "html", "truncated", "gif", "second-bad", "bomb", "too-many-pixels"],
)
def test_it_refuses_input_images_that_break_the_rules(client, files, message):
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.edit(model="gpt-image-2", image=files, prompt=PROMPT)

    assert refusal.value.status_code == 400
    assert refusal.value.param == "image"
    assert message in refusal.value.message
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")


@pytest.mark.parametrize(
    ("image", "mask", "param"),
    [
        (("x.gif", SOURCE_PNG, "image/gif"), None, "image"),
        (SOURCE_PNG, None, "image"),  # bare bytes go as application/octet-stream
        (("x.png", SOURCE_PNG, "image/png"), ("m.bin", MASK_PNG, "text/plain"), "mask"),
    ],
    ids=["gif", "octet-stream", "mask"],
)
def test_it_refuses_parts_sent_with_a_type_it_does_not_take(client, image, mask, param):
    extra = {"mask": mask} if mask else {}
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.edit(model="gpt-image-2", image=image, prompt="x", **extra)

    assert refusal.value.param == param
    assert "unsupported mimetype" in refusal.value.body["message"]
    assert "'image/jpeg', 'image/png', 'image/webp'" in refusal.value.body["message"]


def test_it_refuses_more_than_16_images(client):
    tiny = png_bytes(Image.new("RGB", (32, 32), "white"))
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.edit(
            model="gpt-image-2", image=[(f"{i}.png", tiny) for i in range(17)], prompt="x"
        )

    assert refusal.value.param == "image"
    assert refusal.value.code == "array_above_max_length"
    assert "maximum length 16" in refusal.value.message


def test_it_takes_an_upload_too_large_to_keep_in_memory(client):
    noise = Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3))
    upload = png_bytes(noise)
    result = client.images.edit(
        model="gpt-image-2", image=("noise.png", upload, "image/png"), prompt="x", quality="low"
    )

    assert len(upload) > 2.5 * 2**20  # Django spools it to a temporary file
    assert decode(result.data[0].b64_json).size == (1024, 1024)


def test_it_takes_16_images(client):
    tiny = png_bytes(source_image(640, 1024))
    result = client.images.edit(
        model="gpt-image-2", image=[(f"{i}.png", tiny) for i in range(16)], prompt="x"
    )

    assert result.usage.input_tokens_details.image_tokens == 16 * input_image_tokens(640, 1024)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (png_bytes(Image.new("RGB", (1024, 1024), "white")), "alpha channel"),
        (mask_png(512, 512, (0, 0, 100, 100)), "same dimensions as the image"),
        (encoded(Image.new("RGB", (1024, 1024)), "JPEG"), "must be a PNG"),
        (encoded(Image.new("RGBA", (1024, 1024)), "WEBP"), "must be a PNG"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "must be a PNG"),
        (MASK_PNG[:400], "must be a PNG"),
        (png_claiming(20_000, 20_000), "must be a PNG"),
        (
            png_bytes(Image.frombytes("RGBA", (1100, 1000), os.urandom(1100 * 1000 * 4))),
            "smaller than 4 MB",
        ),
    ],
    ids=["no-alpha", "wrong-size", "jpeg", "webp", "svg", "truncated", "bomb", "over-4mb"],
)
def test_it_refuses_masks_that_break_the_rules(client, mask, message):
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.edit(
            model="gpt-image-2",
            image=("room.png", SOURCE_PNG, "image/png"),
            mask=("mask.png", mask, "image/png"),
            prompt=PROMPT,
        )

    assert refusal.value.param == "mask"
    assert refusal.value.body["message"].startswith("Invalid mask image: ")
    assert message in refusal.value.body["message"]
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"size": "1000x1000"}, "size"),
        ({"input_fidelity": "medium"}, "input_fidelity"),
        ({"n": 11}, "n"),
        ({"partial_images": 4}, "partial_images"),
        ({"output_compression": 50}, "output_compression"),  # png takes none
        ({"model": "dall-e-2"}, "model"),
        ({"prompt": ""}, "prompt"),
        ({"extra_body": {"style": "vivid"}}, "style"),
    ],
)
def test_it_refuses_invalid_parameters(client, params, param):
    params = {"model": "gpt-image-2", "prompt": PROMPT, **params}
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.edit(image=("room.png", SOURCE_PNG, "image/png"), **params)

    assert refusal.value.param == param
    assert_matches_schema(refusal.value.response.json(), "ErrorResponse")


def test_it_answers_directives_like_generations(client):
    image = ("room.png", SOURCE_PNG, "image/png")
    with pytest.raises(openai.BadRequestError) as refusal:
        client.images.edit(model="gpt-image-2", image=image, prompt="x [sandbox:refuse]")
    with pytest.raises(openai.RateLimitError):
        client.images.edit(model="gpt-image-2", image=image, prompt="x [sandbox:error=429]")

    assert refusal.value.code == "moderation_blocked"


def test_it_wants_multipart_and_a_key(endpoint):
    def post(headers: dict[str, str]) -> tuple[int, dict, dict]:
        request = urllib.request.Request(
            endpoint, data=b'{"prompt": "x"}', headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), dict(error.headers)

    json_status, json_error, headers = post(
        {"Authorization": "Bearer sandbox", "Content-Type": "application/json"}
    )
    keyless_status, keyless_error, _ = post({"Content-Type": "application/json"})

    assert json_status == 400
    assert "multipart/form-data" in json_error["error"]["message"]
    assert headers["x-request-id"].startswith("req_")
    assert keyless_status == 401
    assert keyless_error["error"]["code"] == "invalid_api_key"


# The rules themselves, as forms and the browser use them.


def test_mask_rules_name_each_problem():
    assert imagerules.mask_problems(1024, 1024, "png", True, 1000, 1024, 1024) == []
    (no_alpha,) = imagerules.mask_problems(1024, 1024, "png", False, 1000, 1024, 1024)
    (wrong_size,) = imagerules.mask_problems(512, 512, "png", True, 1000, 1024, 1024)
    (not_png,) = imagerules.mask_problems(1024, 1024, "jpeg", False, 1000, 1024, 1024)
    (too_big,) = imagerules.mask_problems(1024, 1024, "png", True, 5 * 2**20, 1024, 1024)
    (unreadable,) = imagerules.mask_problems(0, 0, None, False, 10, 1024, 1024)

    assert "alpha channel" in no_alpha
    assert "mask 512x512, image 1024x1024" in wrong_size
    assert "(it is JPEG)" in not_png
    assert "smaller than 4 MB (it is 5 MB)" in too_big
    assert "not a readable image" in unreadable


def test_input_rules_name_each_problem():
    assert imagerules.input_image_problems("webp", 10, 4000, 3000) == []
    assert imagerules.input_count_problems(1) == imagerules.input_count_problems(16) == []
    assert "at least one" in imagerules.input_count_problems(0)[0]
    assert "at most 16" in imagerules.input_count_problems(17)[0]
    assert "PNG, JPEG or WebP" in imagerules.input_image_problems("gif", 10)[0]
    assert "smaller than 50 MB" in imagerules.input_image_problems("png", 51 * 2**20)[0]
    assert imagerules.input_image_problems("png", 10, 7680, 4320) == []
    assert "33,177,600 pixels" in imagerules.input_image_problems("png", 10, 7680, 4336)[0]


def test_the_browser_gets_the_same_rules_as_json():
    rules = json.loads(json.dumps(imagerules.rules_for_browser()))

    assert rules["input"]["max_images"] == imagerules.MAX_INPUT_IMAGES == 16
    assert rules["input"]["max_bytes"] == 50 * 1024 * 1024
    assert rules["input"]["mime_types"] == ["image/png", "image/jpeg", "image/webp"]
    assert rules["mask"]["max_bytes"] == 4 * 1024 * 1024
    assert rules["mask"]["mime_type"] == "image/png"
    assert rules["size"]["max_edge"] == imagerules.MAX_EDGE
    assert "1024x1024" in rules["size"]["presets"]
