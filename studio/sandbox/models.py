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
