from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

from config.settings import env_bool, env_decimal, env_int, env_list, env_str


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    ours = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE")
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_deploy_check_is_clean_with_production_settings():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="studio.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_without_a_secret_key_refuses_to_start():
    result = run_manage("check", DEBUG="0", ALLOWED_HOSTS="studio.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_a_malformed_flag_names_the_variable():
    result = run_manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr


class TestEnvHelpers:
    def test_defaults_apply_when_unset(self, monkeypatch):
        monkeypatch.delenv("STUDIO_TEST_VALUE", raising=False)
        assert env_str("STUDIO_TEST_VALUE", "x") == "x"
        assert env_bool("STUDIO_TEST_VALUE", True) is True
        assert env_int("STUDIO_TEST_VALUE", 7) == 7
        assert env_list("STUDIO_TEST_VALUE", "a, b,,c") == ["a", "b", "c"]

    def test_a_required_value_that_is_missing_fails_loudly(self, monkeypatch):
        monkeypatch.delenv("STUDIO_TEST_VALUE", raising=False)
        with pytest.raises(ImproperlyConfigured, match="STUDIO_TEST_VALUE"):
            env_str("STUDIO_TEST_VALUE")

    @pytest.mark.parametrize(
        ("helper", "raw"), [(env_bool, "perhaps"), (env_int, "12a"), (env_decimal, "1,5")]
    )
    def test_bad_values_fail_loudly(self, monkeypatch, helper, raw):
        monkeypatch.setenv("STUDIO_TEST_VALUE", raw)
        with pytest.raises(ImproperlyConfigured, match="STUDIO_TEST_VALUE"):
            helper("STUDIO_TEST_VALUE", *(["1"] if helper is env_decimal else [0]))

    @pytest.mark.parametrize(
        ("raw", "value"), [("1", True), ("yes", True), ("off", False), ("", False)]
    )
    def test_flags_read_the_usual_spellings(self, monkeypatch, raw, value):
        monkeypatch.setenv("STUDIO_TEST_VALUE", raw)
        assert env_bool("STUDIO_TEST_VALUE", not value) is value


def test_time_limits_nest_route_timeout_then_task_limits_then_visibility_timeout():
    from studio.models import Route

    default_timeout = Route._meta.get_field("timeout_seconds").default
    assert default_timeout + settings.LEASE_GRACE_SECONDS < settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    if visibility is None:  # the filesystem broker has none; check what Redis would get
        result = run_manage(
            "shell",
            "-c",
            "from django.conf import settings as s; "
            "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'])",
            CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        )
        visibility = int(result.stdout.split()[-1])
    assert settings.CELERY_TASK_TIME_LIMIT < visibility
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST


def test_a_route_timeout_must_end_inside_the_task_limit(db):
    from studio.models import Route

    route = Route(
        name="slow",
        owner="openai",
        base_url="https://api.example/v1",
        timeout_seconds=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    )
    with pytest.raises(ValidationError) as caught:
        route.full_clean()
    assert "task limit" in str(caught.value.message_dict["timeout_seconds"])


def test_embedded_defaults_poll_the_broker_often_and_write_ahead(tmp_path):
    """`make run`'s filesystem broker looks for new messages ten times a second (a submitted
    request waits for the next look), and its SQLite file is in WAL mode so readers never
    wait for the worker's writes."""
    env = {"VAR_DIR": str(tmp_path), "CELERY_BROKER_URL": "filesystem://", "DATABASE_URL": ""}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'studio.sqlite3'}"
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings as s; from django.db import connection as c; "
        "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['polling_interval']); "
        "cursor = c.cursor(); cursor.execute('PRAGMA journal_mode'); print(cursor.fetchone()[0])",
        **env,
    )
    assert result.returncode == 0, result.stderr
    interval, journal = result.stdout.split()[-2:]
    assert float(interval) <= 0.1
    assert journal == "wal"


def test_postgresql_connections_come_from_a_bounded_pool():
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings as s; d = s.DATABASES['default']; "
        "print(d['CONN_MAX_AGE'], d['OPTIONS']['pool']['max_size'])",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/unused",
        DATABASE_POOL_MAX_SIZE="7",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["0", "7"]
