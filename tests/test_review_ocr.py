"""OCR assist on real sandbox images, read by Debian's tesseract (make test installs it)."""

from __future__ import annotations

import html
import re
import shutil

import pytest
from django.urls import reverse

from studio.models import GenerationRequest, Status
from studio.tasks import run_generation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _tesseract():
    if shutil.which("tesseract") is None:
        pytest.fail("tesseract is not installed: `make test` installs tesseract-ocr")


def generated_output(user, route, prompt, monkeypatch):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    generation = GenerationRequest.submit(
        created_by=user,
        route=route,
        prompt=prompt,
        width=1536,
        height=1024,
        quality="low",
        output_format="png",
        expected_text_labels=["SPRING SALE", "Morning Ritual"],
    )
    run_generation(str(generation.id))
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED, generation.failure_message
    return generation.outputs.get()


def suggestions(client, output) -> dict[str, tuple[str, str]]:
    """What the inspection partial pre-fills from OCR: {label: (reads, checked verdict)}."""
    response = client.get(
        reverse("review:inspection", args=[output.id]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    found = {}
    for index, label in enumerate(output.request.expected_text_labels):
        observed = re.search(rf'name="observed_{index}" value="([^"]*)"', page)
        verdict = re.search(rf'name="verdict_{index}" value="(\w+)"[^>]*checked', page)
        found[label] = (observed.group(1) if observed else "", verdict.group(1) if verdict else "")
    return found


def test_ocr_reads_the_quoted_labels_of_a_sandbox_image(
    client, reviewer, designer, live_sandbox, monkeypatch
):
    output = generated_output(
        designer, live_sandbox, 'Poster with "SPRING SALE" and "Morning Ritual"', monkeypatch
    )
    client.force_login(reviewer)
    assert suggestions(client, output) == {
        "SPRING SALE": ("SPRING SALE", "exact"),
        "Morning Ritual": ("Morning Ritual", "exact"),
    }
    assert output.ocr.text  # read once, kept


def test_a_misspelt_label_is_caught_as_wrong(client, reviewer, designer, live_sandbox, monkeypatch):
    output = generated_output(
        designer,
        live_sandbox,
        '[sandbox:typo] Poster with "SPRING SALE" and "Morning Ritual"',
        monkeypatch,
    )
    client.force_login(reviewer)
    found = suggestions(client, output)
    observed, verdict = found["SPRING SALE"]
    assert verdict == "wrong"
    assert observed != "SPRING SALE" and len(observed) == len("SPRING SALE")
    assert found["Morning Ritual"] == ("Morning Ritual", "exact")
