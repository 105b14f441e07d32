"""The edit path through run_generation in-process: imagegen.edit over real HTTP (the sandbox
or a scripted double) with the stored inputs, retries, fallbacks and the drift check."""

from __future__ import annotations

import io
import time
from decimal import Decimal

import pytest
from PIL import Image, ImageChops

from studio import drift, pricing
from studio.models import Attempt, GenerationRequest, Route, Status
from studio.tasks import run_generation
from studio.uploads import Role, read_input_image, read_mask
from tests.doubles import ScriptedProvider, error_reply, image_reply
from tests.edit_fixtures import HOLE, encoded, mask_png, source_image, source_png

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch, settings):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    settings.RETRY_BASE_SECONDS = Decimal("0.001")
    settings.RETRY_MAX_SECONDS = Decimal("0.002")


@pytest.fixture
def gateway_key(monkeypatch):
    monkeypatch.setenv("EDIT_GATEWAY_KEY", "test-key")


def checked_inputs(mask: bool = True, references: int = 0) -> list:
    source = read_input_image(io.BytesIO(source_png()), len(source_png()), "room.png", Role.SOURCE)
    items = [source]
    small = encoded(source_image(512, 768))
    for number in range(references):
        items.append(read_input_image(io.BytesIO(small), len(small), f"r{number}.png", "reference"))
    if mask:
        items.append(read_mask(io.BytesIO(mask_png()), len(mask_png()), "mask.png", source))
    return items


def submit_edit(user, route, prompt='A sign that says "OPEN"', **extra) -> GenerationRequest:
    values = {
        "width": 1024,
        "height": 1024,
        "quality": "low",
        "output_format": "png",
        "inputs": checked_inputs(),
        **extra,
    }
    return GenerationRequest.submit(created_by=user, route=route, prompt=prompt, **values)


def run_until_done(generation, deliveries: int = 10) -> GenerationRequest:
    for _ in range(deliveries):
        run_generation(str(generation.id))
        generation.refresh_from_db()
        if generation.is_terminal:
            return generation
        time.sleep(0.01)
    raise AssertionError(f"still {generation.status}")


def test_a_masked_edit_changes_only_the_hole_and_logs_its_inputs(live_sandbox, designer):
    generation = run_until_done(
        submit_edit(designer, live_sandbox, inputs=checked_inputs(references=2))
    )
    assert generation.status == Status.SUCCEEDED, generation.failure_message
    [attempt] = generation.attempts.all()
    assert attempt.request_shape["input_image_count"] == 3
    assert attempt.request_shape["mask"] is True
    expected = pricing.estimate_input_image_tokens(1024, 1024) + 2 * (
        pricing.estimate_input_image_tokens(512, 768)
    )
    assert attempt.input_image_tokens == expected
    assert generation.input_tokens == attempt.input_text_tokens + expected

    [output] = generation.outputs.all()
    edited = drift.open_image(output.read()).convert("RGB")
    changed = ImageChops.difference(edited, source_image()).getbbox()
    assert changed is not None
    assert HOLE[0] <= changed[0] and changed[2] <= HOLE[2]
    assert HOLE[1] <= changed[1] and changed[3] <= HOLE[3]
    assert output.drift_ratio == 0 and not output.drift_flagged


def test_a_gateway_that_ignores_the_mask_is_flagged(live_sandbox, designer):
    generation = run_until_done(
        submit_edit(designer, live_sandbox, prompt="A sign [sandbox:ignore-mask]")
    )
    assert generation.status == Status.SUCCEEDED
    [output] = generation.outputs.all()
    assert output.drift_ratio > 0.5 and output.drift_flagged


def test_an_edit_without_a_mask_is_not_measured(live_sandbox, designer):
    generation = run_until_done(submit_edit(designer, live_sandbox, inputs=checked_inputs(False)))
    assert generation.status == Status.SUCCEEDED
    assert generation.outputs.get().drift_ratio is None
    assert generation.attempts.get().request_shape["mask"] is False


def test_a_retry_sends_the_same_stored_inputs_again(designer, price_sheet, gateway_key):
    with ScriptedProvider(error_reply(500), image_reply()) as provider:
        route = Route.objects.create(
            name="gateway",
            owner="gateway.example",
            base_url=provider.base_url,
            api_key_env="EDIT_GATEWAY_KEY",
        )
        generation = run_until_done(submit_edit(designer, route))
    assert generation.status == Status.SUCCEEDED, generation.failure_message
    assert [a.retry_reason for a in generation.attempts.all()] == ["provider_5xx", ""]
    first, second = (call["raw"] for call in provider.received)
    source = generation.source_input.read()
    mask = generation.mask_input.read()
    for body in (first, second):
        assert source in body and mask in body
        assert b'name="mask"; filename="mask-' in body
        assert b"Content-Type: image/png" in body
    # A scripted double ignores masks too: the output is a flat blue picture.
    assert generation.outputs.get().drift_flagged


def test_a_fallback_that_cannot_take_masks_is_not_used(
    designer, live_sandbox, price_sheet, gateway_key
):
    live_sandbox.supports_masks = False
    live_sandbox.save()
    with ScriptedProvider(error_reply(500)) as provider:
        route = Route.objects.create(
            name="gateway",
            owner="gateway.example",
            base_url=provider.base_url,
            api_key_env="EDIT_GATEWAY_KEY",
            fallback=live_sandbox,
            max_attempts=2,
        )
        generation = run_until_done(submit_edit(designer, route))
    assert generation.status == Status.FAILED
    assert [a.route for a in generation.attempts.all()] == [route, route]


def test_a_validation_error_from_the_provider_is_not_retried(designer, gateway_key):
    reply = error_reply(400, "invalid_image_mask")
    with ScriptedProvider(reply) as provider:
        route = Route.objects.create(
            name="gateway",
            owner="gateway.example",
            base_url=provider.base_url,
            api_key_env="EDIT_GATEWAY_KEY",
        )
        generation = run_until_done(submit_edit(designer, route))
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "validation")
    assert generation.attempts.count() == 1


def test_inputs_that_cannot_be_read_fail_before_any_call(live_sandbox, designer, settings):
    settings.STORAGE_RETRIES = 1
    generation = submit_edit(designer, live_sandbox)
    source = generation.source_input
    source.file.storage.delete(source.file.name)
    generation = run_until_done(generation)
    assert (generation.status, generation.failure_reason) == (
        Status.FAILED,
        "inputs_unavailable",
    )
    assert not Attempt.objects.filter(request=generation).exists()


def test_an_output_the_drift_check_cannot_read_still_succeeds(live_sandbox, designer, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(drift, "ratios", broken)
    generation = run_until_done(submit_edit(designer, live_sandbox))
    assert generation.status == Status.SUCCEEDED
    assert generation.outputs.get().drift_ratio is None


def test_the_sandbox_bills_input_images_as_the_studio_estimates(live_sandbox, designer):
    generation = submit_edit(designer, live_sandbox)
    run_until_done(generation)
    attempt = generation.attempts.get()
    image = Image.open(io.BytesIO(generation.source_input.read()))
    assert attempt.input_image_tokens == pricing.estimate_input_image_tokens(*image.size)
