"""Streamed partial previews: imagegen reads the sandbox's SSE through the real SDK, the task
stores each preview as it arrives, and the ledger counts the preview tokens."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import openai
import pytest
from PIL import Image

from studio import imagegen, pricing
from studio.models import Attempt, GenerationRequest, OutputImage, Status
from studio.tasks import run_generation
from tests.openapi import assert_matches_schema

pytestmark = pytest.mark.django_db(transaction=True)

FAST = " [sandbox:pace=0]"


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch, settings):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    settings.RETRY_BASE_SECONDS = Decimal("0.001")
    settings.RETRY_MAX_SECONDS = Decimal("0.002")


def submit(user, route, prompt: str, **extra) -> GenerationRequest:
    values = {"width": 1024, "height": 1024, "quality": "low", "output_format": "png", **extra}
    return GenerationRequest.submit(created_by=user, route=route, prompt=prompt, **values)


def source_png() -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((1024, 1024)).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


class TestImagegenStream:
    def test_generate_hands_each_partial_over_then_returns_the_final(self, live_sandbox, designer):
        generation = submit(designer, live_sandbox, '"Stream"' + FAST, partial_images=3)
        received = []

        result = imagegen.generate(live_sandbox, generation, on_partial=received.append)

        assert [p.partial_image_index for p in received] == [0, 1, 2]
        assert all(p.image_number == 0 for p in received)
        assert all((p.image.format, p.image.width) == ("png", 1024) for p in received)
        assert len({p.image.sha256 for p in received} | {result.images[0].sha256}) == 4
        assert result.usage.usage.output_image_tokens == (
            pricing.estimate_output_tokens(1024, 1024, "low")
            + 3 * pricing.PARTIAL_IMAGE_OUTPUT_TOKENS
        )
        assert result.provider_request_id.startswith("req_")
        assert result.http_status == 200

    def test_n_images_each_stream_their_partials_and_usage_adds_up(self, live_sandbox, designer):
        generation = submit(designer, live_sandbox, '"Two"' + FAST, partial_images=1, n=2)
        received = []

        result = imagegen.generate(live_sandbox, generation, on_partial=received.append)

        assert [(p.image_number, p.partial_image_index) for p in received] == [(0, 0), (1, 0)]
        assert len(result.images) == 2
        per_image = pricing.estimate_output_tokens(1024, 1024, "low") + 100
        assert result.usage.usage.output_image_tokens == 2 * per_image
        assert result.usage.usage.input_text_tokens == pricing.estimate_text_tokens('"Two"' + FAST)

    def test_edit_streams_image_edit_events(self, live_sandbox, designer):
        generation = submit(designer, live_sandbox, '"Edit"' + FAST, partial_images=2)
        inputs = imagegen.EditInputs(images=[("source.png", source_png(), "image/png")])
        received = []

        result = imagegen.edit(live_sandbox, generation, inputs, on_partial=received.append)

        assert [p.partial_image_index for p in received] == [0, 1]
        assert result.usage.usage.input_image_tokens > 0
        assert result.usage.usage.output_image_tokens == (
            pricing.estimate_output_tokens(1024, 1024, "low") + 200
        )

    def test_an_error_event_mid_stream_is_classified(self, live_sandbox, designer):
        generation = submit(
            designer, live_sandbox, "x" + FAST + " [sandbox:stream-error]", partial_images=3
        )
        received = []

        with pytest.raises(imagegen.ImageGenError) as failure:
            imagegen.generate(live_sandbox, generation, on_partial=received.append)

        assert failure.value.reason == "provider_5xx"
        assert "error while processing" in failure.value.message
        assert len(received) == 1

    def test_the_streamed_body_matches_the_published_schema(
        self, live_sandbox, designer, monkeypatch
    ):
        bodies = []
        original = imagegen.client_for

        def client_for(route):
            hook = {"request": [lambda request: bodies.append(json.loads(request.read()))]}
            http_client = openai.DefaultHttpxClient(event_hooks=hook)
            return original(route).with_options(http_client=http_client)

        monkeypatch.setattr(imagegen, "client_for", client_for)
        generation = submit(designer, live_sandbox, '"Schema"' + FAST, partial_images=2)

        imagegen.generate(live_sandbox, generation)

        [body] = bodies
        assert_matches_schema(body, "CreateImageRequest")
        assert (body["stream"], body["partial_images"], body["model"]) == (True, 2, "gpt-image-2")

    def test_without_partials_nothing_streams(self, live_sandbox, designer):
        generation = submit(designer, live_sandbox, "plain" + FAST)
        received = []

        result = imagegen.generate(live_sandbox, generation, on_partial=received.append)

        assert received == []
        assert len(result.images) == 1


class TestTaskStoresPreviews:
    def test_it_stores_previews_and_the_final_and_counts_preview_tokens(
        self, live_sandbox, designer
    ):
        generation = submit(designer, live_sandbox, '"Previews"' + FAST, partial_images=2)
        run_generation(str(generation.id))

        generation.refresh_from_db()
        assert generation.status == Status.SUCCEEDED, generation.failure_message
        previews = generation.outputs.filter(kind=OutputImage.Kind.PARTIAL)
        assert [p.index for p in previews] == [0, 1]
        [final] = generation.outputs.filter(kind=OutputImage.Kind.FINAL)
        assert final.sha256 not in {p.sha256 for p in previews}
        assert all(p.read()[:8] == b"\x89PNG\r\n\x1a\n" for p in previews)
        assert all(p.file.name.startswith(f"outputs/{generation.id}/partial-") for p in previews)
        [attempt] = generation.attempts.all()
        image_tokens = pricing.estimate_output_tokens(1024, 1024, "low")
        assert attempt.output_image_tokens == image_tokens + 2 * pricing.PARTIAL_IMAGE_OUTPUT_TOKENS
        assert generation.estimated_output_tokens == attempt.output_image_tokens
        assert attempt.request_shape["partial_images"] == 2
        assert attempt.cost_basis == Attempt.CostBasis.TOKENS
        sheet = attempt.price_sheet
        assert attempt.cost == pricing.cost_of_usage(
            pricing.Usage(
                input_text_tokens=attempt.input_text_tokens,
                output_image_tokens=attempt.output_image_tokens,
            ),
            sheet,
        )
        assert attempt.cost > pricing.cost_of_usage(
            pricing.Usage(
                input_text_tokens=attempt.input_text_tokens, output_image_tokens=image_tokens
            ),
            sheet,
        )

    def test_an_error_mid_stream_is_possibly_billed_and_never_sent_again(
        self, live_sandbox, designer
    ):
        generation = submit(
            designer, live_sandbox, "x" + FAST + " [sandbox:stream-error]", partial_images=2
        )
        for _ in range(5):
            run_generation(str(generation.id))
            generation.refresh_from_db()
            if generation.is_terminal:
                break

        assert generation.status == Status.FAILED
        # The stream had started (200, previews sent): the provider may have billed it, so
        # it is not sent again, and its status and request ID are kept.
        [attempt] = generation.attempts.all()
        assert attempt.retry_reason == "provider_5xx"
        assert (attempt.http_status, attempt.cost, attempt.cost_basis) == (
            200,
            None,
            Attempt.CostBasis.POSSIBLY_BILLED,
        )
        assert attempt.provider_request_id.startswith("req_")
        assert attempt.exposure == generation.estimated_cost
        [preview] = generation.outputs.filter(kind=OutputImage.Kind.PARTIAL)
        assert preview.attempt == attempt
        assert not generation.outputs.filter(kind=OutputImage.Kind.FINAL).exists()

    def test_a_route_without_streaming_is_not_called(self, live_sandbox, designer):
        generation = submit(designer, live_sandbox, "x" + FAST, partial_images=1)
        live_sandbox.supports_streaming = False
        live_sandbox.save()

        run_generation(str(generation.id))

        generation.refresh_from_db()
        assert generation.status == Status.FAILED
        assert generation.failure_reason == "route_unavailable"
        assert not generation.attempts.exists()


class TestRequestPage:
    def test_the_running_page_shows_the_newest_preview(self, client, live_sandbox, designer):
        generation = submit(designer, live_sandbox, '"Live"' + FAST, partial_images=2)
        assert generation.claim()
        attempt = Attempt.begin(generation, live_sandbox)
        result = imagegen.generate(live_sandbox, generation)  # a source of real partial bytes
        from studio.models import store_partial

        first = imagegen.PartialImage(0, 0, result.images[0])
        store_partial(generation, attempt, first)
        client.force_login(designer)

        response = client.get(generation.get_absolute_url(), headers={"HX-Request": "true"})

        assert response.status_code == 200
        body = response.content.decode()
        assert 'data-testid="preview"' in body
        assert "Partial preview 1 of 2" in body
        assert 'data-testid="previews"' not in body

    def test_the_finished_page_lists_the_previews_under_the_final(
        self, client, live_sandbox, designer
    ):
        generation = submit(designer, live_sandbox, '"Done"' + FAST, partial_images=2)
        run_generation(str(generation.id))
        client.force_login(designer)

        response = client.get(generation.get_absolute_url())

        body = response.content.decode()
        assert 'data-testid="preview"' not in body
        assert 'data-testid="previews"' in body
        previews = generation.outputs.filter(kind=OutputImage.Kind.PARTIAL)
        for preview in previews:
            assert preview.get_absolute_url() in body
            assert client.get(preview.get_absolute_url()).status_code == 200
        assert body.index("Output 1 of request") < body.index("Partial previews (2)")


def test_a_broken_final_image_in_a_stream_is_billed_and_its_previews_kept(live_sandbox, designer):
    live_sandbox.max_attempts = 1
    live_sandbox.save()
    generation = submit(
        designer, live_sandbox, "[sandbox:bad-b64] [sandbox:pace=0] x", partial_images=2
    )
    run_generation(str(generation.id))
    generation.refresh_from_db()
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "invalid_output")
    [attempt] = generation.attempts.all()
    # The provider streamed and billed the image (previews included) even though it was broken.
    assert attempt.output_image_tokens == (
        pricing.estimate_output_tokens(1024, 1024, "low") + 2 * pricing.PARTIAL_IMAGE_OUTPUT_TOKENS
    )
    assert attempt.cost > 0
    assert generation.outputs.filter(kind=OutputImage.Kind.PARTIAL).count() == 2
    assert not generation.outputs.filter(kind=OutputImage.Kind.FINAL).exists()
