"""A 403 is logged once, as one line naming the path and the user, with no traceback."""

from __future__ import annotations

import io
import logging

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def log():
    """What the configured root handler prints (settings.LOGGING, as in production)."""
    handler = logging.getLogger().handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_a_403_is_one_line(client, reviewer, log):
    client.force_login(reviewer)
    response = client.get(reverse("audit:dashboard"))
    assert response.status_code == 403
    lines = [line for line in log.getvalue().splitlines() if line.strip()]
    forbidden = [line for line in lines if "Forbidden" in line]
    assert len(forbidden) == 1, lines
    assert "/audit/" in forbidden[0] and "user rita" in forbidden[0]
    assert "Traceback" not in log.getvalue()


def test_a_500_keeps_its_traceback(client, designer, log, monkeypatch):
    from studio import views

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "_composer_context", broken)
    client.raise_request_exception = False
    client.force_login(designer)
    assert client.get(reverse("studio:request-new")).status_code == 500
    assert "Traceback" in log.getvalue() and "boom" in log.getvalue()
