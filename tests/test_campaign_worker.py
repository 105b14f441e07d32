"""A small campaign end to end: launched from its page, released a fair share at a time,
run by a real Celery worker against the sandbox over a socket, delivered as a ZIP."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from django.urls import reverse

from campaigns.models import Campaign
from review.models import decide, inspect_text
from studio.models import Status

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.services,
    pytest.mark.usefixtures("ledger_checked"),
]


@pytest.fixture
def worker_media(celery_worker, settings):
    settings.MEDIA_ROOT = celery_worker.media_root
    return celery_worker


def wait_until_done(campaign: Campaign, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = campaign.progress()
        if progress.is_done:
            return progress
        time.sleep(0.3)
    raise AssertionError(f"campaign still running after {timeout}s: {campaign.progress()}")


def test_a_small_campaign_runs_through_the_worker(
    worker_media, live_sandbox, client, designer, reviewer
):
    client.force_login(designer)
    table = (
        "product,headline,locale\n"
        "lamp,LUMA,de-DE\n"
        "chair,SIT,fr-FR\n"
        "sofa,REST,en-GB\n"
        "desk,WORK,it-IT\n"
        "rug,SOFT,es-ES\n"
        "[sandbox:error=400] vase,FAIL,nl-NL\n"
    )
    response = client.post(
        reverse("campaigns:new"),
        {
            "name": "Spring",
            "template": 'A poster for {product} that says "{headline}"',
            "route": live_sandbox.pk,
            "size": "1024x1024",
            "quality": "low",
            "output_format": "png",
            "n": "1",
            "layout": "table",
            "table": table,
            "file_name_pattern": "{row}-{locale}-{width}x{height}.{ext}",
            "action": "launch",
        },
    )
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    progress = wait_until_done(campaign)
    assert (progress.succeeded, progress.failed) == (5, 1), worker_media.log()[-3000:]
    rows = {r.campaign_row: r for r in campaign.current_requests()}
    assert rows[1].outputs.get().width == 1024
    assert rows[1].attempts.count() == 1 and rows[1].cost > 0
    assert rows[6].status == Status.FAILED
    assert progress.cost == sum((r.cost or 0) for r in rows.values())

    # Review the first row and download it.
    output = rows[1].outputs.get()
    inspect_text(output, reviewer, "LUMA", "LUMA", "exact")
    decide(output, reviewer, "approved")
    archive = zipfile.ZipFile(
        io.BytesIO(
            b"".join(
                client.get(reverse("campaigns:download", args=[campaign.id])).streaming_content
            )
        )
    )
    assert sorted(archive.namelist()) == ["1-de-DE-1024x1024.png", "manifest.csv"]

    # The failed row was answered with an error (not billed): retrying sends it again.
    client.post(reverse("campaigns:retry-failed", args=[campaign.id]))
    progress = wait_until_done(campaign)
    assert campaign.requests.filter(campaign_row=6).count() == 2
    assert progress.failed == 1  # the sandbox fails it again, as told
