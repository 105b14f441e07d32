"""A worker outlives its broker: Redis killed during calls and started again on the same port.

The test runs its own redis-server (never the one the suite shares) and a real worker on it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from config.celery import app
from studio.models import Attempt, GenerationRequest, Status
from studio.tasks import run_generation
from tests.conftest import wait_for_terminal
from tests.worker import RedisServer, free_port, start_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

IN_FLIGHT = 3


@pytest.fixture
def own_redis(tmp_path):
    executable = shutil.which("redis-server")
    if executable is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(executable, free_port(), tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


def submit(route, designer, prompt: str) -> GenerationRequest:
    return GenerationRequest.submit(
        created_by=designer,
        route=route,
        prompt=prompt,
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )


def send_to(broker_url: str, generation: GenerationRequest) -> None:
    with app.connection_for_write(broker_url) as connection:
        run_generation.apply_async(args=[str(generation.id)], connection=connection)


def test_it_keeps_consuming_after_redis_is_killed_mid_calls(
    own_redis, live_sandbox, designer, tmp_path, monkeypatch
):
    # The rows are sent to this test's own broker by hand, not to the suite's.
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    worker = start_worker(tmp_path / "media", env={"CELERY_BROKER_URL": own_redis.url})
    try:
        in_flight = [
            submit(live_sandbox, designer, f"[sandbox:latency=4] call {number}")
            for number in range(IN_FLIGHT)
        ]
        for generation in in_flight:
            send_to(own_redis.url, generation)
        deadline = time.monotonic() + 60
        while Attempt.objects.filter(request__in=in_flight, outcome="calling").count() < IN_FLIGHT:
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.05)

        own_redis.kill()
        time.sleep(1)  # the worker notices the broker is gone while its calls go on
        own_redis.start()

        for generation in in_flight:
            wait_for_terminal(generation, timeout=90)
        # The calls were under way when the broker went; each ends in a named state, and
        # here (the sandbox answered) that state is success, billed once.
        assert [g.status for g in in_flight] == [Status.SUCCEEDED] * IN_FLIGHT, worker.log()
        assert [g.attempts.count() for g in in_flight] == [1] * IN_FLIGHT

        after = submit(live_sandbox, designer, "after the restart")
        send_to(own_redis.url, after)
        wait_for_terminal(after, timeout=90)
        assert after.status == Status.SUCCEEDED, worker.log()
        assert worker.process.poll() is None, worker.log()
        assert "Unrecoverable error" not in worker.log()
    finally:
        worker.stop()
        artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "broker-outage-worker.log").write_text(worker.log())
