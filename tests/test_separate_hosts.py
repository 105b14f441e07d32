"""Nothing assumes one machine: web, sandbox, worker and beat run as separate hosts that share
only PostgreSQL, Redis and S3, and a designer's generate, edit, streamed and conversation
requests complete end to end over HTTP.

Each host is a process of its own with its own working directory, HOME, TMPDIR, VAR_DIR,
MEDIA_ROOT (and, for beat, celerybeat schedule file), started from a fresh environment that
names only what a host of that kind is given in a deployment: the database URL, the broker
URL with a queue of this test's own (so the session's shared worker never takes its
messages), the bucket (web, worker and the operator only; the sandbox and beat get none),
and the sandbox's key and address (the sandbox and the worker). The source tree and the
virtualenv are shared read-only, as an image is: where the test can (root, `unshare`), each
host gets a mount namespace of its own in which both are mounted read-only. Every host runs
with production settings (DEBUG=0, one SECRET_KEY); the web host collects its own static
files first, and the designer's HTTP client speaks to it as from behind a TLS-terminating
proxy (X-Forwarded-Proto, Secure cookies). An operator's machine runs the one-off commands:
`seed_studio` before (the seeded sandbox route has no base URL: the worker's SANDBOX_BASE_URL
names the sandbox host) and `ledger_check --storage` after, against the bucket.

There are two web hosts, as behind a load balancer: the designer logs in on one and goes on
on either, so sessions and CSRF tokens must hold across them.

Where the test can make network namespaces (root, `ip netns`, veth, a bridge), each host runs
in a namespace of its own on a private bridge, like machines on a LAN: the hosts see each
other only by their bridge addresses, both web hosts and the sandbox listen on the same port
8000 (which would collide on one machine), and PostgreSQL and Redis, which listen on the
loopback of the machine, are reached through TCP relays the test runs on the bridge's gateway
address; the local S3 server listens on that address directly. Where namespaces cannot be
made, the hosts run on 127.0.0.1 with separate directories and environments only, and the
test warns so.

PostgreSQL and Redis only: the embedded defaults (SQLite, the filesystem broker) are one
machine's by design. Skipped on them, failed when REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from django.db import connection

from studio.models import GenerationRequest, OutputImage, Route, Status
from tests.edit_fixtures import mask_png, source_png
from tests.worker import BASE_DIR, database_url_for_tests, free_port

pytestmark = pytest.mark.django_db(transaction=True)

BUCKET = "studio-hosts-media"
PASSWORD = "a-long-hosts-password-7"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOST_NAMES = ("web", "web2", "sandbox", "worker", "beat", "ops")
WEB_HOSTS = ("web", "web2")
FAST = " [sandbox:pace=0.05]"


def _require(reason: str) -> None:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


# --- the network -------------------------------------------------------------------------


class Relay:
    """A TCP relay: connections to (listen_host, port) are joined to `target`. It stands for
    the network path from a host to a service that listens on the machine's loopback only."""

    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server((listen_host, 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed = True
        self.server.close()
        for each in self.sockets:
            each.close()


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=20)


class Lan:
    """Network namespaces on a bridge of their own: `gateway` is the machine's side (where
    the services are reached), `address[name]` each host's. What a failed setup made is
    removed again before the error goes on."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000:04d}"
        self.bridge = f"hbr{tag}"
        self.namespaces: dict[str, str] = {}
        self.address: dict[str, str] = {}
        self.links: list[str] = []
        used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
        octet = next(n for n in range(int(tag) % 200 + 20, 256) if f" 10.213.{n}." not in used)
        prefix = f"10.213.{octet}"
        self.gateway = f"{prefix}.1"
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            self.links.append(self.bridge)
            _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for number, name in enumerate(HOST_NAMES):
                namespace = f"hosts-{tag}-{name}"
                outside, inside = f"h{tag}{number}a", f"h{tag}{number}b"
                _run("ip", "netns", "add", namespace)
                self.namespaces[name] = namespace
                _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
                self.links.append(outside)
                _run("ip", "link", "set", inside, "netns", namespace)
                _run("ip", "link", "set", outside, "master", self.bridge)
                _run("ip", "link", "set", outside, "up")
                address = f"{prefix}.{10 + number}"
                _run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
                _run("ip", "-n", namespace, "link", "set", inside, "up")
                _run("ip", "-n", namespace, "link", "set", "lo", "up")
                self.address[name] = address
        except BaseException:
            self.remove()
            raise

    def prefix(self, name: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[name]]

    def remove(self) -> None:
        for namespace in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        for link in self.links:  # veths whose far end never moved, and the bridge
            subprocess.run(["ip", "link", "del", link], capture_output=True)


def make_lan() -> Lan | None:
    """The namespaces, or None (with the reason warned) where this machine cannot make them."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        warnings.warn(
            "separate hosts without network namespaces: not root, or no `ip`", stacklevel=2
        )
        return None
    try:
        return Lan()
    except (subprocess.SubprocessError, OSError, StopIteration) as error:
        detail = getattr(error, "stderr", "") or error
        warnings.warn(f"separate hosts without network namespaces: {detail}", stacklevel=2)
        return None


SHARED_READ_ONLY = (BASE_DIR, Path(sys.prefix).resolve())  # the code and its virtualenv


def read_only_prefix() -> list[str]:
    """A command prefix giving a host its own mount namespace in which the source tree and
    the virtualenv are read-only (so a host that writes beside the code fails), or [] with a
    warning where this machine cannot make one."""
    script = " && ".join(
        f'mount --bind "${index}" "${index}" && mount -o remount,bind,ro "${index}" "${index}"'
        for index in range(1, len(SHARED_READ_ONLY) + 1)
    )
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    paths = [str(path) for path in SHARED_READ_ONLY]
    shift = f"shift {len(SHARED_READ_ONLY)}"
    command = [*prefix, f'{script} && {shift} && exec "$@"', "host", *paths]
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        warnings.warn("hosts share the source tree writable: not root, or no unshare", stacklevel=2)
        return []
    probe = subprocess.run(
        [*command, "sh", "-c", f"! touch {BASE_DIR}/.read-only-probe 2>/dev/null"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        warnings.warn(f"hosts share the source tree writable: {probe.stderr}", stacklevel=2)
        return []
    return command


def reachable_from(lan: Lan, name: str, *addresses: tuple[str, int]) -> list[bool]:
    """Which of these addresses a connection from host `name` reaches."""
    probe = (
        "import socket, sys\n"
        f"for address in {list(addresses)!r}:\n"
        "    try:\n"
        "        socket.create_connection(address, timeout=3).close(); print(1)\n"
        "    except OSError:\n"
        "        print(0)\n"
    )
    done = subprocess.run(
        [*lan.prefix(name), sys.executable, "-c", probe], capture_output=True, text=True
    )
    return [line == "1" for line in done.stdout.split()]


# --- the hosts ---------------------------------------------------------------------------


@dataclass
class Host:
    name: str
    directory: Path
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 45) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {text!r} in its log:\n{self.log()}")
            time.sleep(0.1)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _with_address(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def start_host(
    name: str,
    root: Path,
    command: list[str],
    env: dict[str, str],
    lan,
    namespace: str = "",
    read_only: list[str] | None = None,
) -> Host:
    """Start `command` (`python -m <command>` unless it starts with "sh") as host `name`, in
    `namespace` (its own by default)."""
    directory = root / name
    for folder in ("var/media", "tmp", "home"):
        (directory / folder).mkdir(parents=True)
    environment = {
        # A fresh environment: nothing of the test run's own leaks in.
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(directory / "home"),
        "TMPDIR": str(directory / "tmp"),
        "VAR_DIR": str(directory / "var"),
        "MEDIA_ROOT": str(directory / "var" / "media"),
        "PYTHONPATH": str(BASE_DIR),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **env,
    }
    prefix = lan.prefix(namespace or name) if lan else []
    process = subprocess.Popen(
        [
            *prefix,
            *(read_only or []),
            *(command if command[0] == "sh" else [sys.executable, "-m", *command]),
        ],
        cwd=directory,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    host = Host(name, directory, process)

    def pump() -> None:
        for line in process.stdout:
            host.lines.append(line)

    host.pump = threading.Thread(target=pump, daemon=True)
    host.pump.start()
    return host


def wait_for_http(host: Host, url: str, timeout: float = 45) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = requests.get(url, timeout=2, headers={"X-Forwarded-Proto": "https"})
            if answer.status_code == 200:
                return
        except requests.RequestException:
            pass
        if host.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{host.name} did not answer {url}:\n{host.log()}")
        time.sleep(0.2)


def finished(host: Host, timeout: float = 60) -> str:
    """The log of a one-off host's command, which must succeed."""
    try:
        host.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        host.stop()
    if host.pump is not None:
        host.pump.join(timeout=5)  # until it has read the last lines
    assert host.process.returncode == 0, f"{host.name}:\n{host.log()}"
    return host.log()


@dataclass
class Deployment:
    web_urls: list[str]
    hosts: dict[str, Host]
    s3: object
    ops: Callable[[str, list[str]], Host]


@pytest.fixture
def deployment(transactional_db, tmp_path):
    if connection.vendor != "postgresql":
        _require("separate hosts share a PostgreSQL database; this run is on SQLite")
    broker = django_settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        _require(f"separate hosts share a Redis broker; this run's broker is {broker}")
    try:
        import boto3
        import requests  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        _require(f"{error.name} is not installed")

    lan = make_lan()
    relays: list[Relay] = []
    hosts: dict[str, Host] = {}
    server = None
    access_log = logging.getLogger("werkzeug")
    access_log_level = access_log.level
    try:
        read_only = read_only_prefix()
        database = urlsplit(database_url_for_tests())
        redis = urlsplit(broker)
        if lan:
            service_host = lan.gateway
            pg = Relay(lan.gateway, (database.hostname, database.port or 5432))
            rd = Relay(lan.gateway, (redis.hostname or "127.0.0.1", redis.port or 6379))
            relays += [pg, rd]
            database_url = _with_address(database_url_for_tests(), lan.gateway, pg.port)
            broker_url = _with_address(broker, lan.gateway, rd.port)
        else:
            service_host = "127.0.0.1"
            database_url, broker_url = database_url_for_tests(), broker

        s3_port = free_port()
        # The S3 server's access log would bury the hosts' logs of a failure.
        access_log.setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=service_host, port=s3_port, verbose=False)
        server.start()
        s3_url = f"http://{service_host}:{s3_port}"
        credentials = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=BUCKET)

        if lan:
            # A host reaches the services on the bridge, and nothing of the machine's loopback.
            services = [(lan.gateway, port) for port in (pg.port, rd.port, s3_port)]
            loopback = [("127.0.0.1", database.port or 5432), ("127.0.0.1", redis.port or 6379)]
            for name in HOST_NAMES:
                reached = reachable_from(lan, name, *services, *loopback)
                assert reached == [True] * 3 + [False] * 2, (name, reached)

        def address(name: str) -> str:
            return lan.address[name] if lan else "127.0.0.1"

        sandbox_port = 8000 if lan else free_port()
        queue = f"hosts-{uuid.uuid4().hex[:12]}"
        # Production settings everywhere, one secret for the deployment.
        shared = {
            "DATABASE_URL": database_url,
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
        }
        bucket = {
            **credentials,
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": s3_url,
            "AWS_S3_REGION_NAME": "us-east-1",
        }
        celery = {
            "CELERY_BROKER_URL": broker_url,
            "CELERY_QUEUE": queue,
            "SWEEP_INTERVAL_SECONDS": "2",
        }
        root = tmp_path / "hosts"
        web_urls = {
            name: f"http://{address(name)}:{8000 if lan else free_port()}" for name in WEB_HOSTS
        }
        sandbox_url = f"http://{address('sandbox')}:{sandbox_port}"
        sandbox_key = {"SANDBOX_API_KEY": secrets.token_urlsafe(16)}

        def ops(name: str, command: list[str]) -> Host:
            """A one-off command (`python -m django ...`) from an operator's machine."""
            return start_host(
                name, root, command, {**shared, **bucket}, lan, "ops", read_only=read_only
            )

        # An operator seeds roles, routes and prices, as on a fresh deployment.
        seed = ops("ops-seed", ["django", "seed_studio"])
        hosts["sandbox"] = start_host(
            "sandbox",
            root,
            [
                "gunicorn",
                "config.wsgi",
                "--bind",
                f"{address('sandbox')}:{sandbox_port}",
                "--worker-class",
                "gthread",
                "--threads",
                "16",
                "--graceful-timeout",
                "5",
            ],
            {
                **shared,
                **sandbox_key,
                "SANDBOX_PROCESS": "1",
                "SANDBOX_ENABLED": "1",
                "ALLOWED_HOSTS": address("sandbox"),
            },
            lan,
            read_only=read_only,
        )
        # Two web hosts, as behind a load balancer. Each collects its static files into its
        # own folder (the image's build step), then serves; a TLS-terminating proxy in front
        # of them is the browser's to play.
        python = f"{sys.executable} -m"
        for name in WEB_HOSTS:
            bind = f"{address(name)}:{urlsplit(web_urls[name]).port}"
            hosts[name] = start_host(
                name,
                root,
                [
                    "sh",
                    "-c",
                    f"{python} django collectstatic --noinput -v 0 && exec {python} gunicorn "
                    f"config.wsgi --bind {bind} --worker-class gthread --threads 4 "
                    "--graceful-timeout 5",
                ],
                {
                    **shared,
                    **bucket,
                    **celery,
                    "STATIC_ROOT": str(root / name / "static"),
                    "ALLOWED_HOSTS": address(name),
                },
                lan,
                read_only=read_only,
            )
        hosts["worker"] = start_host(
            "worker",
            root,
            [
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "8",
                "--loglevel",
                "INFO",
                "--hostname",
                f"worker@{queue}",
            ],
            # Reading outputs for review (OCR) is left out: tesseract's passes would double
            # the test's time on a 2-core machine; tests/test_review_ocr.py covers it.
            {
                **shared,
                **bucket,
                **celery,
                **sandbox_key,
                # The seeded sandbox route has no base URL of its own: it is this.
                "SANDBOX_BASE_URL": f"{sandbox_url}/sandbox/v1",
                "REVIEW_OCR_ON_STORE": "0",
            },
            lan,
            read_only=read_only,
        )
        hosts["beat"] = start_host(
            "beat",
            root,
            ["celery", "-A", "config", "beat", "--loglevel", "INFO"],
            {**shared, **celery},
            lan,
            read_only=read_only,
        )
        assert "Route sandbox (sandbox) created." in finished(seed)
        wait_for_http(hosts["sandbox"], f"{sandbox_url}/healthz")
        for name in WEB_HOSTS:
            wait_for_http(hosts[name], f"{web_urls[name]}/healthz")
        hosts["worker"].wait_for(" ready.")
        hosts["beat"].wait_for("beat: Starting")
        yield Deployment(list(web_urls.values()), hosts, s3, ops=ops)
    finally:
        for host in hosts.values():
            host.terminate()
        for host in hosts.values():
            host.stop()
        artifacts = BASE_DIR / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        for host in hosts.values():
            (artifacts / f"separate-hosts-{host.name}.log").write_text(host.log())
        if server is not None:
            server.stop()
        access_log.setLevel(access_log_level)
        for relay in relays:
            relay.close()
        if lan:
            lan.remove()


# --- the designer, over HTTP -------------------------------------------------------------


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, page[:2000]
    return found.group(1)


class Browser:
    """A designer's browser: HTTP to the web host only, as from behind the TLS-terminating
    proxy of a deployment (it says HTTPS; the cookies are Secure, so they are sent by hand)."""

    def __init__(self, base_url: str) -> None:
        import requests

        self.base_url = base_url  # the web host the balancer sends the next requests to
        self.session = requests.Session()

    def _headers(self) -> dict[str, str]:
        jar = self.session.cookies
        cookies = {"Cookie": "; ".join(f"{c.name}={c.value}" for c in jar)} if jar else {}
        origin = "https://" + urlsplit(self.base_url).netloc
        return {"X-Forwarded-Proto": "https", "Origin": origin, **cookies}

    def get(self, path: str, **kwargs):
        return self.session.get(self.base_url + path, timeout=30, headers=self._headers(), **kwargs)

    def submit(self, path: str, data: dict, files: dict | None = None, form_page: str = ""):
        """GET the page with the form (`path` unless `form_page` is given), then POST the
        form with that page's CSRF token; the response (not followed)."""
        page = self.get(form_page or path)
        assert page.status_code == 200, (path, page.status_code, page.text[:2000])
        response = self.session.post(
            self.base_url + path,
            data={**data, "csrfmiddlewaretoken": csrf_token(page.text)},
            files=files,
            allow_redirects=False,
            timeout=30,
            headers=self._headers(),
        )
        assert response.status_code == 302, (path, response.status_code, response.text[:3000])
        return response

    def log_in(self, username: str, password: str) -> None:
        response = self.submit("/accounts/login/", {"username": username, "password": password})
        assert response.headers["Location"] == "/", response.headers


def wait_until_done(request_id: str, hosts: dict[str, Host], timeout: float = 45):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generation = GenerationRequest.objects.get(id=request_id)
        if generation.is_terminal:
            return generation
        time.sleep(0.2)
    logs = "\n".join(f"--- {name}\n{host.log()[-4000:]}" for name, host in hosts.items())
    raise AssertionError(f"request {request_id} still {generation.status}:\n{logs}")


def created_id(response, kind: str) -> str:
    found = re.fullmatch(rf"/{kind}/([0-9a-f-]{{36}})/", response.headers["Location"])
    assert found, response.headers["Location"]
    return found.group(1)


def test_web_worker_beat_and_sandbox_as_separate_hosts(deployment, designer, settings):
    # The web host checks passwords with the default hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    designer.set_password(PASSWORD)
    designer.save()
    route = Route.objects.get(name="sandbox")  # as seeded: the worker host's SANDBOX_BASE_URL
    assert route.base_url == ""
    hosts = deployment.hosts
    # The load balancer sends the designer's requests to either web host: log in on one, and
    # the session and CSRF token hold on the other.
    web, web2 = deployment.web_urls
    browser = Browser(web)
    browser.log_in(designer.username, PASSWORD)

    settings_fields = {"quality": "low", "output_format": "png", "background": "auto", "n": "1"}
    generate = browser.submit(
        "/requests/new/",
        {
            **settings_fields,
            "route": route.pk,
            "size": "1024x1024",
            "prompt": 'A desk lamp with the label "HOSTS"' + FAST,
        },
    )
    browser.base_url = web2
    streamed = browser.submit(
        "/requests/new/",
        {
            **settings_fields,
            "route": route.pk,
            "size": "1024x1024",
            "partial_images": "2",
            "prompt": 'A poster that says "STREAM"' + FAST,
        },
    )
    edit = browser.submit(
        "/requests/edit/",
        {
            **settings_fields,
            "route": route.pk,
            "size": "source",
            "prompt": 'Put a sign that says "OPEN" in the window' + FAST,
        },
        files={
            "source": ("room.png", source_png(), "image/png"),
            "mask": ("mask.png", mask_png(), "image/png"),
        },
    )
    browser.base_url = web
    conversation = browser.submit(
        "/conversations/new/",
        {
            "title": "Hosts poster",
            "route": route.pk,
            "size": "1024x1024",
            "quality": "low",
            "output_format": "png",
            "partial_images": "0",
            "message": 'Draw a poster that says "Spring"' + FAST,
        },
    )
    conversation_id = created_id(conversation, "conversations")
    first_turn = GenerationRequest.objects.get(conversation_id=conversation_id)

    done = {
        kind: wait_until_done(request_id, hosts)
        for kind, request_id in {
            "generate": created_id(generate, "requests"),
            "stream": created_id(streamed, "requests"),
            "edit": created_id(edit, "requests"),
            "conversation": str(first_turn.id),
        }.items()
    }
    # A second turn: the sandbox host answers the follow-up from the database, not memory.
    browser.base_url = web2
    browser.submit(
        f"/conversations/{conversation_id}/turn",
        {"message": 'Add "Two"' + FAST},
        form_page=f"/conversations/{conversation_id}/",
    )
    second_turn = (
        GenerationRequest.objects.filter(conversation_id=conversation_id)
        .order_by("-created_at")
        .first()
    )
    done["follow-up"] = wait_until_done(str(second_turn.id), hosts)
    first_turn.refresh_from_db()
    assert done["follow-up"].previous_response_id == first_turn.response_id

    stored: dict[str, str] = {}  # key in the bucket -> sha256
    for kind, generation in done.items():
        assert generation.status == Status.SUCCEEDED, (kind, generation.failure_message)
        finals = generation.outputs.filter(kind=OutputImage.Kind.FINAL)
        assert finals.count() == 1, kind
        # The page the designer watches shows the image, through the web host's file view.
        page_url = (
            generation.conversation.get_absolute_url()
            if generation.conversation_id
            else generation.get_absolute_url()
        )
        for browser.base_url in deployment.web_urls:
            page = browser.get(page_url)
            assert page.status_code == 200, (kind, page.status_code)
            assert finals.get().get_absolute_url() in page.text, kind
        for output in generation.outputs.all():
            body = deployment.s3.get_object(Bucket=BUCKET, Key=output.file.name)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == output.sha256, (kind, output.file.name)
            stored[output.file.name] = output.sha256
            for browser.base_url in deployment.web_urls:
                served = browser.get(f"/outputs/{output.id}/file")
                assert served.status_code == 200, (kind, browser.base_url, served.status_code)
                assert served.content == body, kind
        for item in generation.inputs.all():
            body = deployment.s3.get_object(Bucket=BUCKET, Key=item.file.name)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == item.sha256
            stored[item.file.name] = item.sha256
    assert done["stream"].outputs.filter(kind=OutputImage.Kind.PARTIAL).exists()
    assert {item.role for item in done["edit"].inputs.all()} >= {"source", "mask"}
    assert len(done["follow-up"].assistant_text) > 0

    # No host keeps any of it on its own disk: nothing in any media folder, no image file in
    # a VAR_DIR or HOME, no file anywhere with the bytes of anything stored. (TMPDIR may hold
    # a scratch image, and the web host's static files may hold icons: only bytes count there.)
    hashes = set(stored.values())
    for name, host in hosts.items():
        media = host.directory / "var" / "media"
        assert not any(media.rglob("*")), (name, list(media.rglob("*")))
        for path in host.directory.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                scratch = any(
                    path.is_relative_to(host.directory / folder) for folder in ("tmp", "static")
                )
                assert scratch or not data.startswith(PNG_MAGIC), (name, path)
                assert hashlib.sha256(data).hexdigest() not in hashes, (name, path)

    # Beat scheduled the sweep from its own host and the worker ran it.
    assert (hosts["beat"].directory / "var" / "celerybeat-schedule").exists() or any(
        (hosts["beat"].directory / "var").glob("celerybeat-schedule*")
    )
    assert "Sending due task sweep-requests" in hosts["beat"].log()
    hosts["worker"].wait_for("studio.tasks.sweep_requests", timeout=10)
    for name in (*WEB_HOSTS, "worker", "sandbox"):
        assert not any((hosts[name].directory / "var").glob("celerybeat-schedule*")), name
    browser.session.close()

    # The ledger's promises hold across the hosts, checked from a machine of its own against
    # the bucket: no file without its row, no row without its file.
    ledger = deployment.ops("ops-ledger", ["django", "ledger_check", "--storage"])
    assert "The ledger holds: no violations." in finished(ledger)
