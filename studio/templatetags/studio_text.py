"""Template filters that put the studio's figures into words."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timeuntil

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """A length of time as people say it ("15 minutes", "1 hour, 30 minutes"), not as
    ISO 8601 ("PT15M"), which is what django-axes hands its lockout page."""
    if not isinstance(value, timedelta):
        return ""
    if value < timedelta(minutes=1):
        seconds = max(1, round(value.total_seconds()))
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    now = timezone.now()
    return timeuntil(now + value, now, depth=2)


@register.filter
def reason_label(reason: str | None) -> str:
    """A retry or failure reason in words (studio.models.reason_label)."""
    from studio.models import reason_label as label

    return label(reason)
