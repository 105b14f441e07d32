from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class StoredResponseQuerySet(models.QuerySet):
    def forget_old(self) -> int:
        """Delete responses past the retention; a follow-up to one answers "not found"."""
        cutoff = timezone.now() - timedelta(hours=settings.SANDBOX_RESPONSE_RETENTION_HOURS)
        deleted, _ = self.filter(created_at__lt=cutoff).delete()
        return deleted

    def live(self) -> StoredResponseQuerySet:
        cutoff = timezone.now() - timedelta(hours=settings.SANDBOX_RESPONSE_RETENTION_HOURS)
        return self.filter(created_at__gte=cutoff)


class StoredResponse(models.Model):
    """What a later turn of a sandbox conversation needs of a response, kept in the database
    so any sandbox process (or host) answers a `previous_response_id`."""

    id = models.CharField(primary_key=True, max_length=64)
    image = models.BinaryField(null=True, help_text="The conversation's latest image, encoded.")
    context_tokens = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = StoredResponseQuerySet.as_manager()

    def __str__(self) -> str:
        return self.id


class SandboxFile(models.Model):
    """A file uploaded to (or written by) the sandbox's Files API: a batch's input JSONL, or
    its output and error files."""

    id = models.CharField(primary_key=True, max_length=64)
    filename = models.CharField(max_length=255)
    purpose = models.CharField(max_length=40)
    content = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.id


class SandboxBatch(models.Model):
    """A batch of the sandbox's Batch API, answered in OpenAI's `Batch` shape."""

    id = models.CharField(primary_key=True, max_length=64)
    endpoint = models.CharField(max_length=100)
    input_file_id = models.CharField(max_length=64)
    completion_window = models.CharField(max_length=10, default="24h")
    status = models.CharField(max_length=20, default="validating")
    output_file_id = models.CharField(max_length=64, blank=True)
    error_file_id = models.CharField(max_length=64, blank=True)
    errors = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    total = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    in_progress_at = models.DateTimeField(null=True, blank=True)
    finalizing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    cancelling_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.id
