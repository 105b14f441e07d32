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


def celery_workers(var_dir: Path) -> list[int]:
    """The Celery worker processes started for this test's VAR_DIR (found by their environment,
    so neither the process tree's shape nor how `ps` prints a long command line matters)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        words = [arg.decode(errors="replace") for arg in argv if arg]
        if (
            f"VAR_DIR={var_dir}".encode() in environ
            and not words[0].endswith("sh")
            and any(word.endswith("celery") for word in words)
            and "worker" in words
            and pid_alive(int(entry.name))
        ):
            found.append(int(entry.name))
    return found


def only_worker(var_dir: Path, honcho: Honcho, timeout: float = 30) -> int:
    """Wait until exactly one worker runs; its process ID."""
    deadline = time.monotonic() + timeout
    while len(workers := celery_workers(var_dir)) != 1:
        assert time.monotonic() < deadline, f"workers {workers} in:\n{honcho.log()}"
        time.sleep(0.2)
    return workers[0]


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
        celery = only_worker(tmp_path, honcho)

        os.kill(celery, signal.SIGKILL)  # as the out-of-memory killer would

        honcho.wait_for("make run: worker stopped (exit 137)")
        honcho.wait_for(" ready.", count=2)
        assert honcho.process.poll() is None
        again = only_worker(tmp_path, honcho)
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
    while celery_workers(tmp_path) or any(pid_alive(pid) for pid in (celery, again)):
        assert time.monotonic() < deadline, "a worker outlived honcho"
        time.sleep(0.2)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
