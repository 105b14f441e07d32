"""`make bench` case: one request's path, submit -> stored, against a bare SDK call.

Starts the sandbox (gunicorn) and one Celery worker the way `make run` does, then, with the
sandbox answering at once, measures in the same run:

- the bare call: the official SDK's `images.generate` against the sandbox, one client reused;
- the studio: `GenerationRequest.submit` to the row's finished_at (both clocks the
  database's), one request at a time, through the broker and the worker;
- the SQL statements one request's task makes (run in this process on the same rows).

Medians of BENCH_PATH_RUNS (default 30). On the embedded defaults (SQLite, the filesystem
broker) unless BENCH_DATABASE_URL names a PostgreSQL database the bench may empty, with
BENCH_BROKER_URL (default redis://127.0.0.1:6379/9).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.bench.concurrency import BASE_DIR, free_port, studio_environment

RUNS = int(os.environ.get("BENCH_PATH_RUNS", "30"))


def main() -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="studio-bench-path-"))
    port = free_port()
    env = studio_environment(var_dir, {})
    python = sys.executable

    import django

    django.setup()
    import openai
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from studio.models import GenerationRequest, Route
    from studio.tasks import run_generation

    user = get_user_model().objects.create_user("bench-path", password="bench-password")
    route = Route.objects.get(name="sandbox")
    base_url = f"http://127.0.0.1:{port}/sandbox/v1"
    route.base_url = base_url
    route.save()

    sandbox = subprocess.Popen(
        [
            python,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--log-level",
            "warning",
        ],
        cwd=BASE_DIR,
        env={**env, "SANDBOX_PROCESS": "1"},
    )
    worker = subprocess.Popen(
        [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "4",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=BASE_DIR,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.3)
        time.sleep(3)  # the worker connects to its broker

        arguments = {"prompt": "a lamp", "size": "1024x1024", "quality": "low", "n": 1}
        client = openai.OpenAI(base_url=base_url, api_key="sk-sandbox", max_retries=0)
        client.images.generate(model="gpt-image-2", **arguments)  # connection and caches
        bare = []
        for _ in range(RUNS):
            started = time.perf_counter()
            client.images.generate(model="gpt-image-2", **arguments)
            bare.append(time.perf_counter() - started)

        def submit() -> GenerationRequest:
            return GenerationRequest.submit(
                created_by=user,
                route=route,
                prompt="a lamp",
                width=1024,
                height=1024,
                quality="low",
                output_format="png",
            )

        studio = []
        for _ in range(RUNS + 1):
            generation = submit()
            deadline = time.monotonic() + 60
            while True:
                generation.refresh_from_db(fields=["finished_at", "status", "created_at"])
                if generation.finished_at:
                    break
                assert time.monotonic() < deadline, f"request {generation.id} did not finish"
                time.sleep(0.002)
            assert generation.status == "succeeded", generation.status
            studio.append((generation.finished_at - generation.created_at).total_seconds())
        studio = studio[1:]  # the first pays for the worker's imports and connections

        # The statements of one request's task, run here on a row sent to nobody.
        original = GenerationRequest.enqueue
        GenerationRequest.enqueue = lambda self, countdown=0: None
        try:
            generation = submit()
        finally:
            GenerationRequest.enqueue = original
        with CaptureQueriesContext(connection) as queries:
            run_generation(str(generation.id))
        statements = [
            q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")
        ]

        bare_ms = statistics.median(bare) * 1000
        studio_ms = statistics.median(studio) * 1000
        print(
            f"one request, sandbox answering at once ({connection.vendor}, "
            f"{env['CELERY_BROKER_URL'].split(':')[0]} broker), median of {RUNS}"
        )
        print(f"  bare SDK call          {bare_ms:8.1f} ms")
        print(
            f"  studio submit->stored  {studio_ms:8.1f} ms  (+{studio_ms - bare_ms:.1f} ms, "
            f"{studio_ms / bare_ms:.2f}x)"
        )
        print(
            f"  SQL per request task   {len(statements):8d}  statements "
            f"(+{len(queries.captured_queries) - len(statements)} BEGIN/COMMIT)"
        )
    finally:
        for process in (worker, sandbox):
            process.terminate()
        for process in (worker, sandbox):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
