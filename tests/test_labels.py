"""Every choice the studio shows has a label written for people: none left to Django's
title-casing of the name ("Provider 5Xx", "Changes Requested"), and reason codes that are
not choices (a request's failure_reason) read in words too."""

from __future__ import annotations

import re

import pytest
from django.apps import apps

from studio.models import STUDIO_FAILURE_LABELS, Attempt, reason_label

TITLE_CASED = re.compile(r"^(?:[A-Z][a-z0-9]*)(?: [A-Z0-9][A-Za-z0-9]*)+$")


def studio_choices():
    for app in ("studio", "review", "sandbox"):
        for model in apps.get_app_config(app).get_models():
            for field in model._meta.get_fields():
                choices = getattr(field, "choices", None)
                if choices and not getattr(field, "remote_field", None):
                    for value, label in choices:
                        yield f"{model.__name__}.{field.name}", value, str(label)


CHOICES = list(studio_choices())


def test_there_are_choices_to_check():
    assert len(CHOICES) > 20


@pytest.mark.parametrize(
    ("where", "value", "label"), CHOICES, ids=[f"{w}={v}" for w, v, _ in CHOICES]
)
def test_no_label_is_django_title_casing(where, value, label):
    generated = str(value).replace("_", " ").title()
    several_words = " " in generated
    assert not (several_words and label == generated), f"{where}: {value!r} reads {label!r}"
    assert not TITLE_CASED.match(label) or label.split()[1].isupper(), f"{where}: {label!r}"
    assert not re.search(r"\d[A-Z][a-z]", label), f"{where}: {label!r}"


def test_failure_reasons_read_in_words():
    assert reason_label("provider_5xx") == "Provider error (5xx)"
    assert reason_label("unknown_outcome") == STUDIO_FAILURE_LABELS["unknown_outcome"]
    assert reason_label("") == ""
    assert reason_label("something_new") == "Something new"
    for value, _ in Attempt.RetryReason.choices:
        assert "_" not in reason_label(value)
