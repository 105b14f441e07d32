"""The image's commands, run as the image runs them: the web and the sandbox as separate
gunicorn processes with production settings (there is no Docker engine here, so the test runs
the Dockerfile's own entrypoint script, not docker)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from openai import OpenAI

from tests.worker import BASE_DIR, database_url_for_tests, free_port

# gunicorn's --timeout in these processes; the sandbox's waits end within 3/4 of it.
WEB_TIMEOUT = 8
KEY = "sandbox-" + secrets.token_hex(16)
SLOW_CALLS = 6
REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")
# The servers use the test database (and so it must be set up for this module).
pytestmark = pytest.mark.django_db(transaction=True)


def entrypoint(tmp_path: Path) -> Path:
    """The studio-entrypoint script exactly as the Dockerfile writes it into the image."""
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    match = re.search(r"<<'SH' /usr/local/bin/studio-entrypoint\n(.*?)\nSH\n", dockerfile, re.S)
    assert match, "the Dockerfile no longer writes studio-entrypoint"
    script = tmp_path / "studio-entrypoint"
    script.write_text(match.group(1) + "\n")
    script.chmod(0o755)
    return script


@dataclass
class Server:
    script: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def production_env(static_root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BASE_DIR / '.venv' / 'bin'}:{os.environ['PATH']}",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url_for_tests(),
        "STATIC_ROOT": str(static_root),
        "SANDBOX_ENABLED": "1",
        "SANDBOX_API_KEY": KEY,
        "WEB_TIMEOUT_SECONDS": str(WEB_TIMEOUT),
        "WEB_CONCURRENCY": "2",
    }


def start(script: Path, command: str, tmp_path: Path, **env: str) -> Server:
    port = free_port()
    log_path = tmp_path / f"{command}-{port}.log"
    environment = {
        **production_env(tmp_path / "static"),
        "PORT": str(port),
        "SANDBOX_PORT": str(port),
        **env,
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(script), command], cwd=BASE_DIR, env=environment, stdout=log, stderr=log
        )
    server = Server(script, port, process, log_path)
    deadline = time.monotonic() + 60
    while True:
        try:
            if get(server.url + "/healthz")[0] == 200:
                return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{command} did not start:\n{log_path.read_text()}")
        time.sleep(0.2)


def get(url: str) -> tuple[int, bytes]:
    # Behind the proxy production has, which says the request came over HTTPS.
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def post(url: str, body: dict) -> tuple[int, dict, dict[str, str]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {KEY}",
            "Content-Type": "application/json",
            "X-Forwarded-Proto": "https",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


@pytest.fixture(scope="module")
def production(django_db_setup, tmp_path_factory):
    """The web and the sandbox as the image starts them, on the test database."""
    tmp_path = tmp_path_factory.mktemp("processes")
    script = entrypoint(tmp_path)
    # As the image's build does: error pages name static files from the manifest.
    subprocess.run(
        [str(script), "python", "manage.py", "collectstatic", "--noinput"],
        cwd=BASE_DIR,
        env=production_env(tmp_path / "static"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    servers = {
        "web": start(script, "web", tmp_path),
        "sandbox": start(script, "sandbox", tmp_path),
    }
    yield servers
    for server in servers.values():
        server.stop()


def test_healthz_answers_while_sandbox_calls_sleep(production):
    web, sandbox = production["web"], production["sandbox"]
    finished: list[str] = []
    answers: list[int] = []

    def slow_call(number: int) -> None:
        status, _, _ = post(
            sandbox.url + "/sandbox/v1/images/generations",
            {"prompt": f"[sandbox:latency=60] call {number}", "quality": "low"},
        )
        answers.append(status)
        finished.append(f"call {number}")

    calls = [threading.Thread(target=slow_call, args=(n,)) for n in range(SLOW_CALLS)]
    for call in calls:
        call.start()
    # More slow calls than the web has workers; none of them reaches a web worker.
    status, body, _ = post(
        web.url + "/sandbox/v1/images/generations", {"prompt": "[sandbox:latency=60] x"}
    )
    assert status == 404
    assert set(body["error"]) == {"message", "type", "param", "code"}

    web_health = get(web.url + "/healthz")
    finished.append("web healthz")
    sandbox_health = get(sandbox.url + "/healthz")
    finished.append("sandbox healthz")
    for call in calls:
        call.join(timeout=60)

    assert web_health == (200, b"ok") and sandbox_health == (200, b"ok")
    # Both health checks answered before any sleeping call did, and every call then ended
    # with its image (the wait was capped below the server's timeout, nothing was killed).
    assert finished[:2] == ["web healthz", "sandbox healthz"], finished
    assert answers == [200] * SLOW_CALLS


def test_the_timeout_directive_answers_504_under_gunicorn(production):
    # The sandbox process (threads), and a sync web worker serving the sandbox as well
    # (SANDBOX_IN_WEB=1): in both the 504 comes before gunicorn's timeout would kill the call.
    web = production["web"]
    web_with_sandbox = start(
        web.script, "web", web.log_path.parent, SANDBOX_IN_WEB="1", WEB_CONCURRENCY="1"
    )
    try:
        for server in (production["sandbox"], web_with_sandbox):
            status, body, headers = post(
                server.url + "/sandbox/v1/images/generations", {"prompt": "[sandbox:timeout] x"}
            )
            assert status == 504, server.log_path.read_text()
            assert body["error"]["type"] == "timeout"
            assert REQUEST_ID.match(headers["x-request-id"])
        assert "WORKER TIMEOUT" not in web_with_sandbox.log_path.read_text()
    finally:
        web_with_sandbox.stop()


def test_a_follow_up_is_answered_by_another_sandbox_process(production):
    first = production["sandbox"]
    other = start(first.script, "sandbox", first.log_path.parent)
    try:
        first_sdk, second_sdk = (
            OpenAI(base_url=server.url + "/sandbox/v1", api_key=KEY, max_retries=0)
            for server in (first, other)
        )
        tool = {"type": "image_generation", "model": "gpt-image-2", "quality": "low"}
        opening = first_sdk.responses.create(model="gpt-5.4", input="a red door", tools=[tool])
        second = second_sdk.responses.create(
            model="gpt-5.4",
            input="make it blue",
            tools=[{**tool, "action": "edit"}],
            previous_response_id=opening.id,
        )
    finally:
        other.stop()

    [call] = [item for item in second.output if item.type == "image_generation_call"]
    assert call.action == "edit"
    assert second.previous_response_id == opening.id
