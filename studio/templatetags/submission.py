"""`{% submission_key %}`: the hidden field that makes a form's POST count once."""

from __future__ import annotations

import uuid

from django import template
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def submission_key() -> str:
    """A hidden `submission_key` input with a new random key (see studio.models.SubmissionKey)."""
    return format_html('<input type="hidden" name="submission_key" value="{}">', uuid.uuid4().hex)
