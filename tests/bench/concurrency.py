"""`make bench` case: thousands of requests in flight at once on one worker host.

Starts the studio the way `make run` does (gunicorn for the web and the sandbox, a Celery
worker on the thread pool) under a temporary VAR_DIR, submits BENCH_REQUESTS requests
(default 2,000) whose sandbox calls each take BENCH_LATENCY seconds (default 20), and
prints: the time until all are done against the latency, rows left unfinished, the
worker's peak resident memory, the most database connections the worker held at once
(PostgreSQL), and the p95 of the request page while idle and during the run.

On the embedded defaults (SQLite, the filesystem broker) unless BENCH_DATABASE_URL names
a PostgreSQL database the bench may empty (it is migrated and seeded) and
BENCH_BROKER_URL a broker, e.g.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/studio_bench \
    BENCH_BROKER_URL=redis://127.0.0.1:6379/9 python -m tests.bench.concurrency
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "2000"))
LATENCY = float(os.environ.get("BENCH_LATENCY", "20"))
# The worker's pool: threads (the studio's choice) or gevent, for comparison (needs the
# gevent package, which the studio does not install).
POOL = os.environ.get("BENCH_POOL", "threads")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the most resident memory the process has had, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def create_database(url: str) -> None:
    """Drop and create the bench's PostgreSQL database (never the suite's)."""
    import psycopg

    server, name = url.rsplit("/", 1)
    assert name not in ("test", "postgres"), f"the bench empties {name}; name another database"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        db.execute(f'CREATE DATABASE "{name}"')


def studio_environment(var_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment a bench runs the studio in, made ready: this process's own plus a
    VAR_DIR of its own, no OCR, no submission limit, and the embedded defaults (SQLite, the
    filesystem broker) unless BENCH_DATABASE_URL names a PostgreSQL database the bench may
    empty (with BENCH_BROKER_URL); migrated and seeded, and set in os.environ too."""
    env = {
        **os.environ,
        "VAR_DIR": str(var_dir),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
        # The bench submits thousands at once on purpose.
        "SUBMISSIONS_PER_MINUTE": "1000000",
        # OCR reads each stored output with tesseract (CPU-bound, seconds each): here it
        # would measure tesseract on two cores, not calls in flight. Its own bench is ocr.py.
        "REVIEW_OCR_ON_STORE": "0",
        **extra,
    }
    if database_url := os.environ.get("BENCH_DATABASE_URL"):
        env["DATABASE_URL"] = database_url
        env["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
        create_database(database_url)
    else:
        env["DATABASE_URL"] = f"sqlite:///{var_dir / 'studio.sqlite3'}"
        env["CELERY_BROKER_URL"] = "filesystem://"
    os.environ.update(env)
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True)
    subprocess.run(
        [python, "manage.py", "seed_studio"],
        cwd=BASE_DIR,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env


def worker_connections() -> int | None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'studio-bench-worker'"
        )
        return cursor.fetchone()[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process and its children (gunicorn's worker) have used."""
    total = 0.0
    for child in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        listed = (task / "children").read_text().split()
        for child in map(int, listed):
            found += [child, *children(child)]
    return found


def p95_ms(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] * 1000 if len(samples) >= 2 else float("nan")


def main() -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    port = free_port()
    env = studio_environment(var_dir, {"SANDBOX_BASE_URL": f"http://127.0.0.1:{port}/sandbox/v1"})
    python = sys.executable
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from studio.models import GenerationRequest, Route

    user = get_user_model().objects.create_user("bench", password="bench-password")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    route = Route.objects.get(name="sandbox")
    route.timeout_seconds = int(LATENCY * 3)
    route.save()

    web = subprocess.Popen(
        [
            python,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--workers",
            "1",
            "--threads",
            str(REQUESTS + 50),
            "--log-level",
            "warning",
        ],
        cwd=BASE_DIR,
        env=env,
    )
    worker_env = dict(env)
    if env["DATABASE_URL"].startswith("postgres"):
        worker_env["DATABASE_URL"] = env["DATABASE_URL"] + "?application_name=studio-bench-worker"
    worker = subprocess.Popen(
        [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            POOL,
            "--concurrency",
            str(REQUESTS),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=BASE_DIR,
        env=worker_env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        time.sleep(3)  # let the worker connect to the broker

        probe = GenerationRequest.submit(
            created_by=user,
            route=route,
            prompt="idle probe",
            width=1024,
            height=1024,
            quality="low",
            output_format="png",
        )
        page = f"{base}{probe.get_absolute_url()}"
        opener = urllib.request.build_opener()
        opener.addheaders = [("Cookie", f"sessionid={session.session_key}")]

        def fetch() -> float:
            started = time.perf_counter()
            with opener.open(page, timeout=30) as response:
                response.read()
            return time.perf_counter() - started

        idle = [fetch() for _ in range(50)]

        started = time.monotonic()
        cpu_before = {name: cpu_seconds(p.pid) for name, p in (("web", web), ("worker", worker))}
        ids = [
            GenerationRequest.submit(
                created_by=user,
                route=route,
                prompt=f'[sandbox:latency={LATENCY}] "N{i}"',
                width=1024,
                height=1024,
                quality="low",
                output_format="png",
            ).id
            for i in range(REQUESTS)
        ]
        submitted = time.monotonic() - started
        busy: list[float] = []
        running = threading.Event()
        running.set()

        def sample() -> None:
            while running.is_set():
                busy.append(fetch())
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        peak_in_flight = 0
        most_connections = 0
        while True:
            most_connections = max(most_connections, worker_connections() or 0)
            statuses = list(
                GenerationRequest.objects.filter(id__in=ids).values_list("status", flat=True)
            )
            peak_in_flight = max(peak_in_flight, statuses.count("running"))
            done = [s for s in statuses if s in ("succeeded", "failed", "refused", "cancelled")]
            if len(done) == len(ids):
                break
            if time.monotonic() - started > LATENCY * 6 + 120:
                print(f"gave up: {len(done)} of {len(ids)} done")
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        cpu = {
            name: cpu_seconds(p.pid) - cpu_before[name]
            for name, p in (("web", web), ("worker", worker))
        }
        running.clear()
        sampler.join(timeout=35)
        succeeded = GenerationRequest.objects.filter(id__in=ids, status="succeeded").count()
        unfinished = GenerationRequest.objects.filter(id__in=ids, finished_at__isnull=True).count()
        waits = sorted(
            (finished - created).total_seconds()
            for created, finished in GenerationRequest.objects.filter(
                id__in=ids, finished_at__isnull=False
            ).values_list("created_at", "finished_at")
        )

        print(
            f"{REQUESTS} requests, sandbox latency {LATENCY:.0f} s, worker {POOL} pool "
            f"of {REQUESTS}, one web process"
        )
        print(
            f"  database               {env['DATABASE_URL'].split(':')[0]}, broker "
            f"{env['CELERY_BROKER_URL'].split(':')[0]}"
        )
        print(
            f"  all done in            {elapsed:8.1f} s  (latency {LATENCY:.0f} s: "
            f"+{elapsed - LATENCY:.1f} s; {succeeded} succeeded, {unfinished} unfinished, "
            f"peak {peak_in_flight} running at once)"
        )
        print(f"  submitting took        {submitted:8.1f} s  (one process, ORM, serially)")
        print(
            f"  CPU per request        {cpu['worker'] / REQUESTS * 1000:8.1f} ms worker, "
            f"{cpu['web'] / REQUESTS * 1000:.1f} ms sandbox+web (drawing and encoding images)"
        )
        if waits:
            print(
                f"  submit -> done         {statistics.median(waits):8.1f} s median, "
                f"{waits[-1]:.1f} s slowest (latency {LATENCY:.0f} s)"
            )
        if most_connections:
            print(f"  worker DB connections  {most_connections:8d}  (most seen at once)")
        print(f"  worker peak RSS        {peak_rss_kib(worker.pid) / 1024:8.1f} MiB")
        print(
            f"  request page p95 idle  {p95_ms(idle):8.1f} ms  (median "
            f"{statistics.median(idle) * 1000:.1f} ms, {len(idle)} samples)"
        )
        print(
            f"  request page p95 busy  {p95_ms(busy):8.1f} ms  (median "
            f"{statistics.median(busy) * 1000:.1f} ms, {len(busy)} samples)"
        )
    finally:
        for process in (worker, web):
            process.terminate()
        for process in (worker, web):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
