"""Hooks from the producing side: every final output stored is read by OCR in the background.

A signal rather than a call in the pipeline, so every way an output is stored (generation,
edit, assistant turn, anything added later) is read the same way.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from studio.models import OutputImage


@receiver(post_save, sender=OutputImage, dispatch_uid="review-ocr-on-store")
def read_stored_output(sender, instance: OutputImage, created: bool, **kwargs) -> None:
    if not created or instance.kind != OutputImage.Kind.FINAL or not settings.REVIEW_OCR_ON_STORE:
        return
    from review.tasks import read_output_text

    output_id = str(instance.pk)
    transaction.on_commit(lambda: read_output_text.delay(output_id))
