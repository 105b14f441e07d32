"""Shared fixtures: named users in their roles, routes, the price sheet, a real worker."""

from __future__ import annotations

import hashlib
import io
import os
import socket
from decimal import Decimal
from urllib.parse import urlparse

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from PIL import Image

from review.models import decide
from studio.management.commands.seed_studio import GPT_IMAGE_2_RELEASE, STANDARD_PRICES
from studio.models import (
    Attempt,
    Conversation,
    GenerationRequest,
    InputImage,
    OutputImage,
    PriceSheet,
    Route,
    Status,
)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def pytest_sessionstart(session) -> None:
    """Service-backed runs fail loudly when the services are missing; they never skip."""
    database = django_settings.DATABASES["default"]
    broker = django_settings.CELERY_BROKER_URL
    problems = []
    if os.environ.get("REQUIRE_SERVICES") == "1":
        if database["ENGINE"] != "django.db.backends.postgresql":
            problems.append(f"REQUIRE_SERVICES=1 but the database is {database['ENGINE']}.")
        if not broker.startswith("redis://"):
            problems.append(f"REQUIRE_SERVICES=1 but the broker is {broker}.")
    if database["ENGINE"] == "django.db.backends.postgresql":
        host, port = database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)
        if not _reachable(host, port):
            problems.append(f"PostgreSQL is not reachable at {host}:{port}.")
    if broker.startswith("redis://"):
        parsed = urlparse(broker)
        if not _reachable(parsed.hostname or "127.0.0.1", parsed.port or 6379):
            problems.append(f"Redis is not reachable at {parsed.hostname}:{parsed.port or 6379}.")
    if problems:
        pytest.exit("Required services are missing:\n  " + "\n  ".join(problems), returncode=3)


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings, tmp_path) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Storing an output queues its OCR on the broker, where the session's real worker would
    # read it while a test's teardown empties the tables; tests of that hook turn it on.
    settings.REVIEW_OCR_ON_STORE = False
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def roles(db) -> dict[str, Group]:
    return {
        name: Group.objects.get_or_create(name=name)[0]
        for name in ("designer", "reviewer", "admin")
    }


def _user(django_user_model, username: str, group: Group | None, **extra):
    user = django_user_model.objects.create_user(
        username=username, password="pw-" + username, **extra
    )
    if group is not None:
        user.groups.add(group)
    return user


@pytest.fixture
def designer(django_user_model, roles):
    return _user(django_user_model, "dana", roles["designer"])


@pytest.fixture
def other_designer(django_user_model, roles):
    return _user(django_user_model, "otto", roles["designer"])


@pytest.fixture
def reviewer(django_user_model, roles):
    return _user(django_user_model, "rita", roles["reviewer"])


@pytest.fixture
def admin_user(django_user_model, roles):
    return _user(django_user_model, "ada", roles["admin"], is_staff=True)


@pytest.fixture
def outsider(django_user_model, roles):
    return _user(django_user_model, "oscar", None)


@pytest.fixture
def price_sheet(db) -> PriceSheet:
    return PriceSheet.objects.create(
        model="gpt-image-2", effective_from=GPT_IMAGE_2_RELEASE, **STANDARD_PRICES
    )


@pytest.fixture
def sandbox_route(db, price_sheet) -> Route:
    """The sandbox route, pointing nowhere yet: tests that call it use `live_sandbox`."""
    return Route.objects.create(
        name="sandbox",
        owner="sandbox",
        model_map={"gpt-image-2": "gpt-image-2"},
        timeout_seconds=30,
        supports_streaming=True,
        supports_assistant=True,
    )


@pytest.fixture
def live_sandbox(live_server, sandbox_route) -> Route:
    """The sandbox route served by a real HTTP server on a loopback socket."""
    sandbox_route.base_url = f"{live_server.url}/sandbox/v1"
    sandbox_route.save(update_fields=["base_url"])
    return sandbox_route


@pytest.fixture
def provider_route(db) -> Route:
    return Route.objects.create(
        name="gateway",
        owner="laozhang.ai",
        base_url="http://127.0.0.1:9/v1",
        api_key_env="GATEWAY_TEST_KEY",
        pricing_mode=Route.PricingMode.PER_CALL,
        price_per_call=Decimal("0.03"),
    )


def run_until_done(generation, deliveries: int = 10):
    """Deliver a request's task in-process as the broker would, again after each scheduled
    retry, until the request ends."""
    import time

    from studio.tasks import run_generation

    for _ in range(deliveries):
        run_generation(str(generation.id))
        generation.refresh_from_db()
        if generation.is_terminal:
            return generation
        time.sleep(0.01)
    raise AssertionError(f"still {generation.status} after {deliveries} deliveries")


@pytest.fixture
def ledger_checked(db, settings, celery_worker):
    """After an integration test, `manage.py ledger_check --storage` must find nothing: CI
    proves the ledger's promises on every run of a real worker. The worker's storage is
    emptied before and after, so each test's check sees only its own files."""
    import shutil
    from io import StringIO
    from pathlib import Path

    from django.core.management import call_command

    def empty(root) -> None:
        for folder in ("outputs", "inputs"):
            shutil.rmtree(Path(root) / folder, ignore_errors=True)

    empty(celery_worker.media_root)
    yield
    out = StringIO()
    try:
        call_command("ledger_check", "--storage", stdout=out)
    except Exception as error:
        raise AssertionError(f"ledger_check after the test: {out.getvalue()}") from error
    finally:
        empty(settings.MEDIA_ROOT)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process (thread pool) on the configured broker and test database."""
    from config.celery import app
    from tests.worker import start_worker

    # Messages left by an earlier run point at rows that no longer exist; drop them.
    app.control.purge()
    worker = start_worker(tmp_path_factory.mktemp("worker-media"))
    yield worker
    worker.stop()
    _close_other_sessions(django_db_blocker)
    artifacts = django_settings.BASE_DIR / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "celery-worker.log").write_text(worker.log())


@pytest.fixture(scope="session", autouse=True)
def _end_stray_sessions(django_db_setup, django_db_blocker):
    """Set up before (so torn down after) the live server and workers: end any session they
    left on the test database so it can be dropped."""
    yield
    _close_other_sessions(django_db_blocker)


def _close_other_sessions(django_db_blocker) -> None:
    """Workers (and a killed one) may leave sessions on the test database; end them and wait
    until they are gone, so the database can be dropped at the end of the run."""
    import time

    from django.db import connection

    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            return
        if connection.settings_dict["NAME"] != connection.creation._get_test_db_name():
            return  # no test used the database, so none was made (and there is nothing to end)
        # A fresh connection: the one this thread held may itself have been ended by a test.
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_terminate_backend(pid) {others}")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cursor.execute(f"SELECT count(*) {others}")
                if cursor.fetchone()[0] == 0:
                    break
                time.sleep(0.1)
        connection.close()


def wait_for_terminal(generation, timeout: float = 60.0):
    """Poll the row (the source of truth) until the request ends."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generation.refresh_from_db()
        if generation.is_terminal:
            return generation
        time.sleep(0.2)
    raise AssertionError(f"request {generation.id} still {generation.status} after {timeout}s")


@pytest.fixture
def seed_frames(db):
    """The seed frames. Migrations create them, but transactional tests flush every table."""
    import importlib

    from studio.models import PromptFrame

    seed = importlib.import_module("studio.migrations.0003_seed_prompt_frames")
    for spec in seed.FRAMES:
        if not PromptFrame.objects.filter(key=spec["key"]).exists():
            PromptFrame.objects.create(**spec)
    return {frame.key: frame for frame in PromptFrame.objects.all()}


def png(size=(64, 64), mode="RGB", color=(120, 160, 200, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color[: len(mode)]).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def objects(designer, reviewer, sandbox_route, seed_frames):
    """For the URL walks: the designer's masked edit, with its inputs, its output, a change
    request on it, and a conversation."""
    generation = GenerationRequest.objects.create(
        created_by=designer,
        route=sandbox_route,
        operation="edit",
        prompt="p",
        prompt_sha256="0" * 64,
        width=64,
        height=64,
        quality="low",
        output_format="png",
        provider_model="gpt-image-2",
        status=Status.SUCCEEDED,
    )
    inputs = {}
    for position, (role, data) in enumerate(
        [("source", png()), ("mask", png(mode="RGBA", color=(0, 0, 0, 0)))]
    ):
        item = InputImage(
            request=generation,
            role=role,
            position=position,
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data),
            width=64,
            height=64,
            format="png",
            mode="RGB" if role == "source" else "RGBA",
            original_sha256=hashlib.sha256(data).hexdigest(),
        )
        item.file.save(f"{role}.png", ContentFile(data), save=False)
        item.save()
        inputs[role] = item
    output = OutputImage(
        request=generation,
        attempt=Attempt.begin(generation, sandbox_route),
        sha256="0" * 64,
        bytes=10,
        width=64,
        height=64,
        format="png",
    )
    output.file.save("00.png", ContentFile(png(color=(10, 20, 30, 255))), save=False)
    output.save()
    region = ContentFile(png(mode="RGBA", color=(0, 0, 0, 0)), name="region.png")
    decision = decide(output, reviewer, "changes_requested", "bluer", region)
    conversation = Conversation.objects.create(
        owner=designer,
        title="t",
        route=sandbox_route,
        settings={"width": 1024, "height": 1024, "quality": "low", "output_format": "png"},
    )
    from campaigns.models import Campaign

    campaign = Campaign.objects.create(owner=designer, name="c", route=sandbox_route, row_count=1)
    GenerationRequest.objects.create(
        created_by=designer,
        route=sandbox_route,
        prompt="p",
        prompt_sha256="0" * 64,
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
        provider_model="gpt-image-2",
        status=Status.FAILED,
        campaign=campaign,
        campaign_row=1,
    )
    from api.models import ApiToken, Webhook, WebhookDelivery

    hook = Webhook.objects.create(
        owner=designer, url="https://hooks.example.org/x", events=["request.finished"]
    )
    delivery = WebhookDelivery.objects.create(webhook=hook, event="request.finished", payload={})
    return {
        "campaign_id": campaign.id,
        "row": 1,
        "token_id": ApiToken.create_for(designer, "walk").token.pk,
        "webhook_id": hook.pk,
        "delivery_id": delivery.pk,
        "conversation_id": conversation.id,
        "request_id": generation.id,
        "output_id": output.id,
        "input_id": inputs["source"].id,
        "decision_id": decision.id,
    }
