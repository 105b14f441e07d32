"""A real Celery worker process runs requests end to end against the sandbox on a socket."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from studio.models import GenerationRequest, Status
from studio.tasks import run_generation
from tests.conftest import wait_for_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


@pytest.fixture
def worker_media(celery_worker, settings):
    settings.MEDIA_ROOT = celery_worker.media_root
    return celery_worker


def test_a_real_worker_generates_stores_and_logs(worker_media, live_sandbox, designer):
    generation = GenerationRequest.submit(
        created_by=designer,
        route=live_sandbox,
        prompt='A poster that says "OPEN DAY"',
        width=1024,
        height=1536,
        quality="medium",
        output_format="jpeg",
        output_compression=90,
    )
    wait_for_terminal(generation)
    assert generation.status == Status.SUCCEEDED, generation.failure_message

    [output] = generation.outputs.all()
    data = default_storage.open(output.file.name).read()
    assert hashlib.sha256(data).hexdigest() == output.sha256
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == ("JPEG", (1024, 1536))

    [attempt] = generation.attempts.all()
    assert attempt.provider_request_id.startswith("req_")
    assert attempt.output_image_tokens == 1372
    assert attempt.cost is not None and attempt.cost > 0
    assert generation.cost == attempt.cost


def test_two_deliveries_of_one_request_bill_once(worker_media, live_sandbox, designer):
    generation = GenerationRequest.submit(
        created_by=designer,
        route=live_sandbox,
        prompt="[sandbox:latency=1] twice",
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    run_generation.delay(str(generation.id))  # a second delivery of the same id
    wait_for_terminal(generation)
    assert generation.status == Status.SUCCEEDED
    # Wait until the worker has handled the second delivery too, then count.
    deadline = time.monotonic() + 30
    while f"request {generation.id}: already claimed" not in worker_media.log():
        assert time.monotonic() < deadline, "the second delivery never reached the worker"
        time.sleep(0.2)
    assert generation.attempts.count() == 1
    assert generation.outputs.count() == 1


def test_a_refusal_through_the_worker_is_shown_as_refused(worker_media, live_sandbox, designer):
    generation = GenerationRequest.submit(
        created_by=designer,
        route=live_sandbox,
        prompt="[sandbox:refuse] poster",
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    wait_for_terminal(generation)
    assert (generation.status, generation.failure_reason) == (Status.REFUSED, "policy")
    assert generation.attempts.count() == 1
