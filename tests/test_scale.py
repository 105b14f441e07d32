"""Calls in flight cost almost nothing: a worker waiting on the provider holds no database
connection, so a small pool serves many more calls than it has connections.

The figures (2,000 in flight, RSS, connections) are `make bench`'s; this test proves the
mechanism on a real worker: more calls in flight than the worker's pool has connections,
all answered in about one call's latency.
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import connection

from studio.models import Attempt, GenerationRequest, Status
from studio.tasks import run_generation
from tests.conftest import wait_for_terminal
from tests.worker import database_url_for_tests, start_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

IN_FLIGHT = 12
POOL = 3
LATENCY = 4


def worker_connections(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


def test_calls_in_flight_outnumber_the_workers_database_connections(
    live_sandbox, designer, tmp_path, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (psycopg_pool)")
    # The rows go to this test's own queue, served by a worker whose pool holds POOL
    # connections; the session's shared worker never sees them.
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    name = f"studio-{queue}"
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    worker = start_worker(
        tmp_path / "media",
        concurrency=IN_FLIGHT,
        queues=queue,
        env={
            "DATABASE_URL": f"{database_url_for_tests()}?application_name={name}",
            "DATABASE_POOL_MIN_SIZE": "1",
            "DATABASE_POOL_MAX_SIZE": str(POOL),
            "DATABASE_POOL_TIMEOUT": "5",
        },
    )
    try:
        calls = [
            GenerationRequest.submit(
                created_by=designer,
                route=live_sandbox,
                prompt=f'[sandbox:latency={LATENCY}] "CALL {number}"',
                width=1024,
                height=1024,
                quality="low",
                output_format="png",
            )
            for number in range(IN_FLIGHT)
        ]
        started = time.monotonic()
        for generation in calls:
            run_generation.apply_async(args=[str(generation.id)], queue=queue)

        most = 0
        deadline = started + 60
        while Attempt.objects.filter(request__in=calls, outcome="calling").count() < IN_FLIGHT:
            most = max(most, worker_connections(name))
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.05)
        # Every call is out at once, and the worker holds at most its pool meanwhile.
        for _ in range(10):
            most = max(most, worker_connections(name))
            time.sleep(0.05)
        assert most <= POOL, most

        for generation in calls:
            wait_for_terminal(generation, timeout=60)
        elapsed = time.monotonic() - started
        assert [g.status for g in calls] == [Status.SUCCEEDED] * IN_FLIGHT, worker.log()
        # One latency and change, not IN_FLIGHT / POOL rounds of it.
        assert elapsed < LATENCY * 2.5, elapsed
        assert "PoolTimeout" not in worker.log()
    finally:
        worker.stop()
