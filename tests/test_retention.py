"""Retention: files of outputs past their delete-after date are deleted through the storage
API; the rows, and the ledger they belong to, stay."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from studio.models import Attempt, OutputImage
from studio.tasks import delete_expired_outputs
from studio.thumbnails import thumbnail_name
from tests.test_audit import make_attempt, make_output, make_request

pytestmark = pytest.mark.django_db
TODAY = timezone.localdate


def stored_output(user, route, *, delete_after, name: str = "") -> OutputImage:
    """An output whose file really exists in the (per-test) media storage."""
    generation = make_request(user, route)
    attempt = make_attempt(generation, 1, cost=Decimal("0.006"), basis=Attempt.CostBasis.TOKENS)
    saved = default_storage.save(
        name or f"outputs/{generation.id}/00-file.png", ContentFile(b"\x89PNG fake")
    )
    return make_output(attempt, file=saved, delete_after=delete_after)


@pytest.fixture
def expired(designer, sandbox_route) -> OutputImage:
    return stored_output(designer, sandbox_route, delete_after=TODAY() - timedelta(days=1))


def test_it_deletes_expired_files_and_keeps_the_rows(expired, designer, sandbox_route):
    due_today = stored_output(designer, sandbox_route, delete_after=TODAY())
    kept = stored_output(designer, sandbox_route, delete_after=TODAY() + timedelta(days=30))
    forever = stored_output(designer, sandbox_route, delete_after=None)
    name, sha256 = expired.file.name, expired.sha256

    summary = delete_expired_outputs()

    assert summary == {"deleted": 1, "failed": 0, "finished": True}
    assert not default_storage.exists(name)
    expired.refresh_from_db()
    assert expired.deleted_at is not None
    # The record stays: row, path, hash, and the attempt and request it belongs to.
    assert (expired.file.name, expired.sha256) == (name, sha256)
    assert Attempt.objects.filter(pk=expired.attempt_id, cost=Decimal("0.006")).exists()
    for output in (due_today, kept, forever):
        output.refresh_from_db()
        assert output.deleted_at is None
        assert default_storage.exists(output.file.name)


def test_it_goes_through_the_storage_api(expired, monkeypatch):
    deleted = []
    monkeypatch.setattr(default_storage, "delete", deleted.append)
    delete_expired_outputs()
    # The file, then the gallery's thumbnail of it (deleting a missing name is no error).
    assert deleted == [expired.file.name, thumbnail_name(expired.pk)]


def test_a_second_run_does_nothing(expired):
    delete_expired_outputs()
    expired.refresh_from_db()
    first = expired.deleted_at
    assert delete_expired_outputs() == {"deleted": 0, "failed": 0, "finished": True}
    expired.refresh_from_db()
    assert expired.deleted_at == first


def test_a_file_already_gone_is_not_an_error(expired):
    default_storage.delete(expired.file.name)
    assert delete_expired_outputs()["deleted"] == 1
    expired.refresh_from_db()
    assert expired.deleted_at is not None


def test_a_storage_failure_leaves_the_row_for_the_next_run(expired, monkeypatch):
    def broken(name):
        raise OSError("storage is down")

    monkeypatch.setattr(default_storage, "delete", broken)
    assert delete_expired_outputs()["failed"] == 1
    expired.refresh_from_db()
    assert expired.deleted_at is None
    monkeypatch.undo()
    assert delete_expired_outputs()["deleted"] == 1


def test_it_works_through_more_than_one_batch(designer, sandbox_route, monkeypatch):
    monkeypatch.setattr("studio.tasks.RETENTION_BATCH", 2)
    outputs = [
        stored_output(designer, sandbox_route, delete_after=TODAY() - timedelta(days=3))
        for _ in range(5)
    ]
    assert delete_expired_outputs()["deleted"] == 5
    assert not OutputImage.objects.filter(
        pk__in=[o.pk for o in outputs], deleted_at__isnull=True
    ).exists()


def test_the_file_view_answers_404_once_deleted_and_the_ledger_says_deleted(
    client, admin_user, expired
):
    client.force_login(admin_user)
    assert client.get(expired.get_absolute_url()).status_code == 200
    delete_expired_outputs()
    assert client.get(expired.get_absolute_url()).status_code == 404
    html = client.get(reverse("audit:attempts")).content.decode()
    assert f"deleted {TODAY():%Y-%m-%d}" in html


def test_celery_beat_runs_it_periodically():
    entry = settings.CELERY_BEAT_SCHEDULE["delete-expired-outputs"]
    assert entry["task"] == "studio.tasks.delete_expired_outputs"
    assert entry["schedule"] == settings.RETENTION_INTERVAL_SECONDS > 0
