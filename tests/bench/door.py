"""`make bench` case: the OpenAI door holding many waiting clients, and what it adds.

Starts the web under ASGI (`gunicorn config.asgi -k uvicorn_worker.UvicornWorker`, one
worker process), the sandbox as its own gunicorn, and a Celery worker, on a scratch VAR_DIR
and the database in DATABASE_URL (PostgreSQL for the full figures). Then:

1. BENCH_DOOR_CLIENTS (500) OpenAI SDK clients (AsyncOpenAI, one event loop) call
   images.generate through the door at once, each a sandbox call of BENCH_DOOR_LATENCY
   (2) s, BENCH_DOOR_WORKERS (40) worker threads: prints how many came back with their
   image, and the web process's resident memory (peak) and threads while they all wait.
2. 30 calls one after another, through the door and straight to the sandbox with the same
   SDK: prints both medians and the door's median overhead (submission, queue, worker,
   ledger, the wait's poll interval OPENAI_DOOR_POLL_MILLISECONDS, and the image's return).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
CLIENTS = int(os.environ.get("BENCH_DOOR_CLIENTS", "500"))
LATENCY = float(os.environ.get("BENCH_DOOR_LATENCY", "2"))
SEQUENTIAL = 30
# Worker threads: each holds a database connection while it runs a call; the clients beyond
# them wait with their requests queued (the door holds them all the same).
WORKERS = int(os.environ.get("BENCH_DOOR_WORKERS", "40"))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def child_pid(pid: int) -> int:
    """gunicorn's (only) worker process, which serves the door."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0])


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def main() -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="studio-bench-door-"))
    web_port, sandbox_port = free_port(), free_port()
    sandbox_key = "bench-" + secrets.token_hex(8)
    env = {
        **os.environ,
        "VAR_DIR": str(var_dir),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SANDBOX_ENABLED": "1",
        "SANDBOX_API_KEY": sandbox_key,
        "SANDBOX_BASE_URL": f"http://127.0.0.1:{sandbox_port}/sandbox/v1",
        "SANDBOX_MAX_LATENCY_SECONDS": str(int(LATENCY) + 10),
        "WEB_TIMEOUT_SECONDS": str(int(LATENCY) * 4 + 60),
        "SUBMISSIONS_PER_MINUTE": "1000000",
        "LOG_LEVEL": "WARNING",
    }
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
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from api.models import ApiToken
    from studio.models import Route

    user, _ = get_user_model().objects.get_or_create(username="door-bench")
    user.groups.add(Group.objects.get_or_create(name="designer")[0])
    secret = ApiToken.create_for(user, "bench").secret
    Route.objects.filter(name="sandbox").update(timeout_seconds=int(LATENCY) + 60)

    timeout = env["WEB_TIMEOUT_SECONDS"]
    web = subprocess.Popen(
        [
            python,
            "-m",
            "gunicorn",
            "config.asgi",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "--bind",
            f"127.0.0.1:{web_port}",
            "--workers",
            "1",
            "--timeout",
            timeout,
            "--backlog",
            "2048",
            "--log-level",
            "warning",
        ],
        cwd=BASE_DIR,
        env=env,
    )
    sandbox = subprocess.Popen(
        [
            python,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{sandbox_port}",
            "--worker-class",
            "gthread",
            "--workers",
            "2",
            "--threads",
            str(WORKERS + 10),
            "--timeout",
            timeout,
            "--backlog",
            "2048",
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
            str(CLIENTS),
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
        wait_for(f"http://127.0.0.1:{web_port}/healthz")
        wait_for(f"http://127.0.0.1:{sandbox_port}/healthz")
        time.sleep(3)  # the worker connects to the broker
        door_pid = child_pid(web.pid)
        asyncio.run(run(web_port, sandbox_port, secret, sandbox_key, door_pid))
    finally:
        for process in (web, sandbox, worker):
            process.terminate()
        for process in (web, sandbox, worker):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def run(web_port: int, sandbox_port: int, secret: str, sandbox_key: str, pid: int):
    import openai

    door = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{web_port}/v1",
        api_key=secret,
        max_retries=0,
        timeout=600,
    )
    direct = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{sandbox_port}/sandbox/v1",
        api_key=sandbox_key,
        max_retries=0,
    )
    baseline = status_of(pid)

    async def one(number: int):
        try:
            result = await door.images.generate(
                model="gpt-image-2",
                prompt=f"[sandbox:latency={LATENCY}] bench {number}",
                size="1024x1024",
                quality="low",
            )
            return bool(result.data and result.data[0].b64_json)
        except openai.APIError as error:
            return f"{type(error).__name__}: {error}"[:200]

    started = time.monotonic()
    calls = [asyncio.ensure_future(one(n)) for n in range(CLIENTS)]
    peak_threads, peak_rss, samples = 0, 0, 0
    while not all(call.done() for call in calls):
        await asyncio.sleep(0.5)
        status = status_of(pid)
        peak_threads = max(peak_threads, int(status["Threads"]))
        peak_rss = max(peak_rss, int(status["VmRSS"].split()[0]))
        samples += 1
    results = [call.result() for call in calls]
    elapsed = time.monotonic() - started
    ok = results.count(True)
    errors = sorted({r for r in results if r is not True})[:3]
    hwm = int(status_of(pid)["VmHWM"].split()[0])
    print(
        f"door: {ok} of {CLIENTS} waiting clients got their image in {elapsed:.1f} s "
        f"(each call {LATENCY:.0f} s at the sandbox)"
    )
    if errors:
        print(f"door: errors seen: {errors}")
    print(
        f"door: web process RSS {int(baseline['VmRSS'].split()[0]) / 1024:.0f} MiB idle, "
        f"peak {peak_rss / 1024:.0f} MiB while waiting (VmHWM {hwm / 1024:.0f} MiB); "
        f"threads {baseline['Threads'].strip()} idle, peak {peak_threads}"
    )

    async def timed(client, prompt: str) -> float:
        began = time.perf_counter()
        await client.images.generate(
            model="gpt-image-2", prompt=prompt, size="1024x1024", quality="low"
        )
        return time.perf_counter() - began

    through, straight = [], []
    for number in range(SEQUENTIAL):
        straight.append(await timed(direct, f"overhead {number}"))
        through.append(await timed(door, f"overhead {number}"))
    d, s = statistics.median(through) * 1000, statistics.median(straight) * 1000
    from django.conf import settings

    poll = round(settings.OPENAI_DOOR_POLL_SECONDS * 1000)
    print(
        f"door: median {d:.0f} ms through the door, {s:.0f} ms straight to the sandbox: "
        f"{d - s:.0f} ms added (poll interval {poll} ms)"
    )


if __name__ == "__main__":
    main()
