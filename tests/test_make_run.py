"""`make run` (honcho with the Procfile): a process that dies is reported and started again,
and the others keep running; stopping honcho stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.worker import BASE_DIR


def descendants(pid: int) -> dict[int, str]:
    """Every process under `pid`, with its command line."""
    table = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True
    ).stdout
    rows = [line.split(None, 2) for line in table.splitlines() if line.strip()]
    found: dict[int, str] = {}
    parents = {pid}
    while parents:
        children = {int(row[0]): row[2] for row in rows if int(row[1]) in parents}
        found.update(children)
        parents = set(children)
    return found


def celery_workers(pid: int) -> list[int]:
    return [
        child
        for child, args in descendants(pid).items()
        if "celery -A config worker" in args and not args.startswith("/bin/sh")
    ]


class Honcho:
    def __init__(self, *names: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "honcho", "start", "-f", "Procfile", *names],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, count: int = 1, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"no {count} x {text!r} in:\n{self.log()}"
            time.sleep(0.2)


def test_a_worker_that_dies_is_reported_and_started_again(tmp_path):
    env = {
        **os.environ,
        # Its own embedded broker and files: nothing here touches the suite's services.
        "VAR_DIR": str(tmp_path),
        "CELERY_BROKER_URL": "filesystem://",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'studio.sqlite3'}",
        "WORKER_CONCURRENCY": "2",
        "RESTART_DELAY": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    honcho = Honcho("worker", env=env)
    try:
        honcho.wait_for(" ready.")
        [celery] = celery_workers(honcho.process.pid)

        os.kill(celery, signal.SIGKILL)  # as the out-of-memory killer would

        honcho.wait_for("make run: worker stopped (exit 137)")
        honcho.wait_for(" ready.", count=2)
        assert honcho.process.poll() is None
        [again] = celery_workers(honcho.process.pid)
        assert again != celery
    finally:
        honcho.process.send_signal(signal.SIGTERM)
        try:
            honcho.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            honcho.process.kill()
            pytest.fail("honcho did not stop:\n" + honcho.log())
    # Stopping honcho stopped the restart loop and the worker with it.
    deadline = time.monotonic() + 30
    while celery_workers(honcho.process.pid) or any(pid_alive(pid) for pid in (celery, again)):
        assert time.monotonic() < deadline, "a worker outlived honcho"
        time.sleep(0.2)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
