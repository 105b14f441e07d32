"""Edits end to end: the edit page, a real Celery worker, imagegen.edit through the openai SDK
to the sandbox on a socket, stored outputs and the drift check."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.html import escape

from studio import drift, pricing
from studio.models import GenerationRequest, OutputImage, Status
from tests.conftest import wait_for_terminal
from tests.edit_fixtures import mask_png, source_png, upload

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.services,
    pytest.mark.usefixtures("ledger_checked"),
]


@pytest.fixture
def worker_media(celery_worker, settings):
    settings.MEDIA_ROOT = celery_worker.media_root
    return celery_worker


def submit_edit(client, route, prompt: str, **files) -> GenerationRequest:
    response = client.post(
        reverse("studio:edit-new"),
        {
            "route": route.pk,
            "prompt": prompt,
            "size": "source",
            "quality": "low",
            "output_format": "png",
            "background": "auto",
            "n": "1",
            **files,
        },
    )
    assert response.status_code == 302, response.context["form"].errors
    return GenerationRequest.objects.get(pk=response.url.rstrip("/").rsplit("/", 1)[-1])


def test_a_masked_edit_through_the_worker_keeps_to_the_mask(
    client, worker_media, live_sandbox, designer
):
    client.force_login(designer)
    generation = submit_edit(
        client,
        live_sandbox,
        'Put a sign that says "OPEN" in the window',
        source=upload("room.png", source_png()),
        mask=upload("mask.png", mask_png()),
    )
    wait_for_terminal(generation)
    assert generation.status == Status.SUCCEEDED, generation.failure_message

    [attempt] = generation.attempts.all()
    assert attempt.provider_request_id.startswith("req_")
    assert attempt.request_shape["input_image_count"] == 1
    assert attempt.input_image_tokens == pricing.estimate_input_image_tokens(1024, 1024)
    [output] = generation.outputs.all()
    assert output.drift_ratio is not None and output.drift_ratio < 0.001
    assert not output.drift_flagged

    page = client.get(generation.get_absolute_url()).content.decode()
    assert 'data-testid="drift-figure">0.0%' in page
    assert reverse("studio:output-drift", args=[output.id]) in page

    # The output can be edited again: its child request is an edit whose parent it is.
    child = submit_edit(
        client,
        live_sandbox,
        "Make the sign blue",
        source_output=str(output.id),
        mask=upload("mask.png", mask_png()),
    )
    wait_for_terminal(child)
    assert child.status == Status.SUCCEEDED, child.failure_message
    assert child.parent_output == output
    assert child.outputs.get().drift_ratio < 0.001
    parent_page = client.get(generation.get_absolute_url()).content.decode()
    assert child.get_absolute_url() in parent_page


def test_a_route_that_ignores_the_mask_is_flagged_for_review(
    client, worker_media, live_sandbox, designer, reviewer
):
    client.force_login(designer)
    generation = submit_edit(
        client,
        live_sandbox,
        'Put a sign that says "OPEN" in the window [sandbox:ignore-mask]',
        source=upload("room.png", source_png()),
        mask=upload("mask.png", mask_png()),
    )
    wait_for_terminal(generation)
    assert generation.status == Status.SUCCEEDED, generation.failure_message
    [output] = generation.outputs.all()
    assert output.drift_ratio > 0.5
    assert output.drift_flagged
    assert OutputImage.objects.filter(drift_flagged=True).get() == output

    page = client.get(generation.get_absolute_url()).content.decode()
    assert f"{output.drift_percent:.1f}%" in page
    assert escape("the route may have ignored the mask") in page
    heatmap = client.get(reverse("studio:output-drift", args=[output.id]))
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"
    assert output.drift_ratio > drift.DRIFT_THRESHOLD
