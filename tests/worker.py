"""Start a real Celery worker process against the test database and broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def database_url_for_tests() -> str:
    """The URL of the database the tests use right now (pytest-django's test database)."""
    config = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{config['NAME']}"
    user = quote(config.get("USER") or "", safe="")
    password = quote(config.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = config.get("HOST") or "127.0.0.1"
    port = config.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{config['NAME']}"


@dataclass
class WorkerProcess:
    media_root: Path
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_worker(
    media_root: Path,
    concurrency: int = 4,
    ready_timeout: float = 60,
    queues: str | None = None,
    env: dict[str, str] | None = None,
    beat: bool = False,
) -> WorkerProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "MEDIA_ROOT": str(media_root),
        "PYTHONUNBUFFERED": "1",
        # Retries come back quickly in tests; the policy is the same.
        "RETRY_BASE_SECONDS": "0.05",
        "RETRY_MAX_SECONDS": "0.2",
        # The key of the scripted gateway routes the tests create.
        "STUDIO_TEST_GATEWAY_KEY": "test-key",
        # The worker is shared by the session: OCR tasks queued by one test must not read
        # rows while the next test's teardown empties the tables. OCR tests run it in-line.
        "REVIEW_OCR_ON_STORE": "0",
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        *(["--queues", queues] if queues else []),
        *(["--beat", "--schedule", str(media_root / "celerybeat-schedule")] if beat else []),
    ]
    process = subprocess.Popen(
        command, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    worker = WorkerProcess(media_root, process)
    ready = threading.Event()

    def pump() -> None:
        for line in process.stdout:
            worker.lines.append(line)
            if " ready." in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + ready_timeout
    while not ready.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError("The Celery worker did not start:\n" + worker.log())
    return worker


@dataclass
class RedisServer:
    """A redis-server of the test's own on a free port: it may be killed and started again
    without touching the Redis the rest of the suite uses."""

    executable: str
    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, ready_timeout: float = 20) -> None:
        # Append-only persistence, as a production Redis keeps it: a queued message survives
        # a restart; what the kill cut off mid-write may not, and the sweep covers that.
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as an out-of-memory killer or a lost host ends it: no clean shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill()
