"""imagegen through the real openai SDK, against the sandbox on a loopback socket."""

from __future__ import annotations

import base64
import io
import socket

import pytest
from PIL import Image

from studio import imagegen
from studio.billing import Answer
from studio.models import GenerationRequest

pytestmark = pytest.mark.django_db(transaction=True)


def request_for(user, route, prompt: str, **extra) -> GenerationRequest:
    values = {"width": 1024, "height": 1024, "quality": "low", "output_format": "png", **extra}
    return GenerationRequest(
        created_by=user, route=route, prompt=prompt, provider_model="gpt-image-2", **values
    )


def test_it_returns_decoded_images_usage_and_the_provider_request_id(live_sandbox, designer):
    result = imagegen.generate(live_sandbox, request_for(designer, live_sandbox, 'Say "Hi"'))
    assert result.http_status == 200
    assert result.provider_request_id.startswith("req_")
    assert result.usage.usage.output_image_tokens == 196
    [image] = result.images
    assert (image.width, image.height, image.format) == (1024, 1024, "png")
    assert Image.open(io.BytesIO(image.data)).size == (1024, 1024)


def test_it_sends_the_mapped_model_and_compression(live_sandbox, designer):
    request = request_for(designer, live_sandbox, "x", output_format="webp", output_compression=60)
    params = imagegen.generation_params(request)
    assert params["model"] == "gpt-image-2"
    assert params["output_compression"] == 60
    png = imagegen.generation_params(
        request_for(designer, live_sandbox, "x", output_compression=60)
    )
    assert "output_compression" not in png


@pytest.mark.parametrize(
    ("prompt", "extra", "reason", "status", "code"),
    [
        ("[sandbox:refuse] a poster", {}, "policy", 400, "moderation_blocked"),
        ("[sandbox:error=429] a poster", {}, "rate_limit", 429, "rate_limit_exceeded"),
        ("[sandbox:error=500] a poster", {}, "provider_5xx", 500, ""),
        ("[sandbox:error=503] a poster", {}, "provider_5xx", 503, ""),
        ("a poster", {"width": 1000}, "size", 400, "invalid_value"),
        ("a poster", {"quality": "ultra"}, "validation", 400, "invalid_value"),
    ],
)
def test_http_errors_are_classified(live_sandbox, designer, prompt, extra, reason, status, code):
    with pytest.raises(imagegen.ImageGenError) as caught:
        imagegen.generate(live_sandbox, request_for(designer, live_sandbox, prompt, **extra))
    error = caught.value
    assert (error.reason, error.http_status) == (reason, status)
    if code:
        assert error.code == code
    assert error.provider_request_id.startswith("req_")


def test_a_rate_limit_carries_retry_after(live_sandbox, designer):
    with pytest.raises(imagegen.ImageGenError) as caught:
        imagegen.generate(live_sandbox, request_for(designer, live_sandbox, "[sandbox:error=429]"))
    assert caught.value.retry_after is not None


def test_a_slow_provider_is_a_timeout(live_sandbox, designer):
    live_sandbox.timeout_seconds = 1
    with pytest.raises(imagegen.ImageGenError) as caught:
        imagegen.generate(
            live_sandbox, request_for(designer, live_sandbox, "[sandbox:latency=3] slow")
        )
    assert caught.value.reason == "timeout"


def test_an_unreachable_provider_is_a_connection_error(sandbox_route, designer):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe socket is closed.
    sandbox_route.base_url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(imagegen.ImageGenError) as caught:
        imagegen.generate(sandbox_route, request_for(designer, sandbox_route, "x"))
    assert caught.value.reason == "connection"
    # Nothing listened on the port: the request never reached a provider, so not billed.
    assert caught.value.answer == Answer.NOT_SENT


def test_undecodable_base64_is_invalid_output_with_the_billed_usage(live_sandbox, designer):
    with pytest.raises(imagegen.ImageGenError) as caught:
        imagegen.generate(live_sandbox, request_for(designer, live_sandbox, "[sandbox:bad-b64]"))
    assert caught.value.reason == "invalid_output"
    assert caught.value.answer == Answer.INCOMPLETE
    assert caught.value.http_status == 200
    assert caught.value.provider_request_id.startswith("req_")
    assert caught.value.usage.usage.output_image_tokens == 196


class TestDecodeImage:
    def _b64(self, image_format: str, size=(64, 32)) -> str:
        buffer = io.BytesIO()
        Image.new("RGB", size, "white").save(buffer, image_format)
        return base64.b64encode(buffer.getvalue()).decode()

    def test_it_reads_a_whole_image(self):
        image = imagegen.decode_image(self._b64("WEBP"), expected="webp")
        assert (image.width, image.height, image.format) == (64, 32, "webp")

    @pytest.mark.parametrize(
        "payload",
        [
            "",
            "!!!not base64!!!",
            base64.b64encode(b"<html>not an image</html>").decode(),
        ],
    )
    def test_it_refuses_what_is_not_an_image(self, payload):
        with pytest.raises(imagegen.ImageGenError) as caught:
            imagegen.decode_image(payload)
        assert caught.value.reason == "invalid_output"

    def test_it_refuses_a_truncated_image(self):
        data = base64.b64decode(self._b64("PNG", (256, 256)))
        with pytest.raises(imagegen.ImageGenError):
            imagegen.decode_image(base64.b64encode(data[: len(data) // 2]).decode())

    def test_it_refuses_another_format_than_asked(self):
        with pytest.raises(imagegen.ImageGenError) as caught:
            imagegen.decode_image(self._b64("JPEG"), expected="png")
        assert "Asked for png" in caught.value.message
