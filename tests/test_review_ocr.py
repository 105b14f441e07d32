"""OCR assist on real sandbox images, read by Debian's tesseract (make test installs it)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess

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


@pytest.mark.parametrize(
    ("labels", "size"),
    [
        # Each of these came back empty or garbled from the single sparse-text pass.
        (("STRIDE",), (3072, 1024)),
        (("LUMA PRO",), (1024, 1536)),
        (("LUMA PRO",), (1536, 1024)),
        (("GO",), (1024, 1024)),
    ],
)
def test_large_plain_labels_are_read_exactly(labels, size):
    from review import ocr
    from studio.sandbox.render import Picture, render_image

    data = render_image(
        Picture(
            text=" ".join(f'"{label}"' for label in labels),
            labels=labels,
            width=size[0],
            height=size[1],
            quality="high",
            output_format="png",
        )
    )
    reading = ocr.read_labels(data, list(labels))
    assert [(s.observed, s.verdict) for s in reading.suggestions] == [
        (label, "exact") for label in labels
    ]


def test_each_stored_output_is_read_before_anyone_opens_it(
    client, reviewer, designer, live_sandbox, monkeypatch, settings
):
    """Storing an output queues the OCR task (here run at once, as a worker would)."""
    from review import tasks

    settings.REVIEW_OCR_ON_STORE = True
    queued = []
    monkeypatch.setattr(tasks.read_output_text, "delay", lambda output_id: queued.append(output_id))
    typo = generated_output(
        designer,
        live_sandbox,
        '[sandbox:typo] Poster "SPRING SALE" and "Morning Ritual"',
        monkeypatch,
    )
    clean = generated_output(
        designer, live_sandbox, 'Poster "SPRING SALE" and "Morning Ritual"', monkeypatch
    )
    assert queued == [str(typo.id), str(clean.id)]
    for output_id in queued:
        tasks.read_output_text(output_id)
    assert typo.ocr.suspects_mismatch and not clean.ocr.suspects_mismatch
    assert typo.ocr.suggestions[0]["verdict"] == "wrong"
    assert len(typo.ocr.passes) > 1  # the misspelling made the reader try more than one pass

    client.force_login(reviewer)
    queue = client.get(reverse("review:queue"), {"flagged": "ocr"})
    assert [o.id for o in queue.context["page"]] == [typo.id]
    assert "OCR suspects a mismatch" in queue.content.decode()
    # Reviewers still confirm: nothing is recorded as inspected until they do.
    assert not typo.inspections.exists()


def test_a_worker_runs_at_most_its_share_of_tesseract_processes(settings, monkeypatch):
    """Hundreds of worker threads may finish calls at once; OCR for each must not start a
    tesseract per thread and take every core from the calls in flight."""
    import threading
    import time

    from PIL import Image

    from review import ocr

    settings.OCR_PROCESSES = 2
    ocr._tesseract_slots.cache_clear()
    running, most, lock = 0, 0, threading.Lock()
    environments = []

    def fake_run(command, **options):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        environments.append(options["env"])
        time.sleep(0.05)
        with lock:
            running -= 1
        return subprocess.CompletedProcess(command, 0, stdout="TEXT", stderr="")

    monkeypatch.setattr(ocr.subprocess, "run", fake_run)
    image = Image.new("L", (40, 20), 255)
    threads = [threading.Thread(target=ocr._run, args=(image, 6, "eng")) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ocr._tesseract_slots.cache_clear()
    assert most == 2
    assert all(env["OMP_THREAD_LIMIT"] == "1" for env in environments)
