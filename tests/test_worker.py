"""A real Celery worker process runs requests end to end against the sandbox on a socket."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from studio.models import GenerationRequest, Status
from studio.tasks import run_generation
from tests.conftest import wait_for_terminal

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.services,
    pytest.mark.usefixtures("ledger_checked"),
]


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


def test_rate_limited_then_ok_through_the_worker(worker_media, designer, price_sheet, monkeypatch):
    from studio.models import Route
    from tests.doubles import ScriptedProvider, error_reply, image_reply

    with ScriptedProvider(error_reply(429, "rate_limit_exceeded", "0"), image_reply()) as double:
        route = Route.objects.create(
            name="double",
            owner="gateway.example",
            base_url=double.base_url,
            api_key_env="STUDIO_TEST_GATEWAY_KEY",
        )
        generation = GenerationRequest.submit(
            created_by=designer,
            route=route,
            prompt="p",
            width=1024,
            height=1024,
            quality="low",
            output_format="png",
        )
        wait_for_terminal(generation)
    assert generation.status == Status.SUCCEEDED, generation.failure_message
    assert [a.retry_reason for a in generation.attempts.all()] == ["rate_limit", ""]
    assert generation.outputs.count() == 1


def test_a_worker_killed_mid_call_leaves_one_terminal_state_and_no_second_bill(
    django_db_setup, live_sandbox, designer, tmp_path, monkeypatch
):
    import signal
    import uuid

    from studio.models import Attempt
    from studio.tasks import sweep_requests
    from tests.worker import start_worker

    queue = f"crash-{uuid.uuid4().hex[:8]}"
    # The call outlasts the kill by seconds even on a loaded machine; the lease (timeout,
    # no grace) runs out soon after.
    live_sandbox.timeout_seconds = 8
    live_sandbox.save()
    worker = start_worker(tmp_path, queues=queue, env={"LEASE_GRACE_SECONDS": "0"})
    try:
        monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
        generation = GenerationRequest.submit(
            created_by=designer,
            route=live_sandbox,
            prompt="[sandbox:latency=7] doomed",
            width=1024,
            height=1024,
            quality="low",
            output_format="png",
        )
        run_generation.apply_async(args=[str(generation.id)], queue=queue)
        deadline = time.monotonic() + 30
        while not Attempt.objects.filter(request=generation, outcome="calling").exists():
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.05)
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=10)
    finally:
        worker.stop()

    generation.refresh_from_db()
    assert generation.status == Status.RUNNING
    time.sleep(max(0, (generation.lease_expires_at - timezone.now()).total_seconds()) + 0.2)
    sweep_requests()
    generation.refresh_from_db()
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "unknown_outcome")
    [attempt] = generation.attempts.all()
    assert attempt.outcome == Attempt.Outcome.UNKNOWN
    # The task message was never acknowledged; a redelivery finds the row settled.
    run_generation(str(generation.id))
    assert generation.attempts.count() == 1
    assert not generation.outputs.exists()


def test_a_database_connection_killed_mid_task_writes_one_ledger_row(
    worker_media, live_sandbox, designer
):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL (CI runs this on PostgreSQL)")
    from studio.models import Attempt

    generation = GenerationRequest.submit(
        created_by=designer,
        route=live_sandbox,
        prompt="[sandbox:latency=2] slow",
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    deadline = time.monotonic() + 30
    while not Attempt.objects.filter(request=generation, outcome="calling").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        killed = cursor.fetchall()
    assert killed, "no worker connection to kill"
    wait_for_terminal(generation)
    assert generation.status == Status.SUCCEEDED, generation.failure_message
    assert generation.attempts.count() == 1
    assert generation.outputs.count() == 1


def test_requests_queued_when_redis_restarts_all_finish(
    django_db_setup, live_sandbox, designer, tmp_path, monkeypatch, settings
):
    """Redis here keeps nothing on disk: a restart loses every queued message. The rows
    remain, and the sweep (beat, inside the worker) sends them again."""
    import shutil
    import subprocess

    from config.celery import app
    from tests.worker import free_port, start_worker

    redis_server = shutil.which("redis-server")
    assert redis_server, "redis-server is needed for this test (installed on CI machines)"
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"

    def start_redis() -> subprocess.Popen:
        process = subprocess.Popen(
            [
                redis_server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            != "PONG"
        ):
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.1)
        return process

    redis = start_redis()
    worker = None
    settings.MEDIA_ROOT = tmp_path  # where this test's worker stores (ledger_check looks)
    try:
        monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
        generations = [
            GenerationRequest.submit(
                created_by=designer,
                route=live_sandbox,
                prompt=f'[sandbox:latency=0.5] "Q{i}"',
                width=1024,
                height=1024,
                quality="low",
                output_format="png",
            )
            for i in range(4)
        ]
        with app.connection_for_write(broker) as connection:
            for generation in generations:
                run_generation.apply_async(args=[str(generation.id)], connection=connection)
        assert (
            subprocess.run(
                ["redis-cli", "-p", str(port), "llen", "studio"], capture_output=True, text=True
            ).stdout.strip()
            == "4"
        )
        redis.terminate()
        redis.wait(timeout=10)
        redis = start_redis()
        assert (
            subprocess.run(
                ["redis-cli", "-p", str(port), "llen", "studio"], capture_output=True, text=True
            ).stdout.strip()
            == "0"
        )

        worker = start_worker(
            tmp_path,
            beat=True,
            env={
                "CELERY_BROKER_URL": broker,
                "SWEEP_INTERVAL_SECONDS": "1",
                "QUEUED_STALE_SECONDS": "1",
                "VAR_DIR": str(tmp_path),
            },
        )
        for generation in generations:
            wait_for_terminal(generation, timeout=60)
            assert generation.status == Status.SUCCEEDED, generation.failure_message
            assert generation.attempts.count() == 1
    finally:
        if worker is not None:
            worker.stop()
        redis.terminate()
        redis.wait(timeout=10)
