"""Campaigns through the Batch API: one JSONL batch of the rows (custom_id = request ID),
uploaded and polled through the official SDK against the sandbox's Files and Batch APIs;
every line an Attempt with its own usage and cost, priced at the batch tier."""

from __future__ import annotations

import io
import time
from decimal import Decimal

import pytest
from django.core.management import call_command

from campaigns import batches
from campaigns.models import Campaign, CampaignBatch, launch
from studio import pricing
from studio.management.commands.seed_studio import BATCH_SOURCE, batch_prices
from studio.models import PriceSheet, Status
from tests.test_campaigns import check_free

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

TEMPLATE = 'A poster for {product} that says "{headline}"'


@pytest.fixture
def batch_route(live_sandbox, price_sheet, settings):
    settings.SANDBOX_BATCH_SECONDS = 0
    PriceSheet.objects.create(
        model=price_sheet.model,
        effective_from=price_sheet.effective_from,
        tier=PriceSheet.Tier.BATCH,
        source=BATCH_SOURCE,
        to_check=True,
        **batch_prices(
            {
                name: getattr(price_sheet, name)
                for name in (
                    "text_input",
                    "cached_text_input",
                    "image_input",
                    "cached_image_input",
                    "image_output",
                    "text_output",
                )
            }
        ),
    )
    live_sandbox.supports_batch = True
    live_sandbox.save(update_fields=["supports_batch"])
    return live_sandbox


def run(campaign: Campaign) -> CampaignBatch:
    submitted = batches.submit(campaign)
    assert submitted is not None
    for _ in range(50):
        batches.poll()
        submitted.refresh_from_db()
        if submitted.settled_at:
            return submitted
    raise AssertionError("the batch never ended")


def test_a_batch_campaign_ends_each_row_from_its_own_line(
    batch_route, designer, price_sheet, monkeypatch
):
    monkeypatch.setattr("campaigns.models._start", lambda campaign: lambda: None)
    checked = check_free(
        "product,headline\n"
        "lamp,LUMA\n"
        "chair,SIT\n"
        "[sandbox:batch-fail] sofa,REST\n"
        "[sandbox:batch-missing] desk,WORK\n"
        "[sandbox:batch-garbled] rug,SOFT\n"
        "[sandbox:error=400] vase,VASE\n",
        TEMPLATE,
    )
    campaign = launch(
        owner=designer,
        name="Batch",
        route=batch_route,
        rows=checked.rows,
        template=TEMPLATE,
        mode=Campaign.Mode.BATCH,
    )
    standard_estimate = batch_route.estimate(
        prompt=checked.rows[0].prompt, width=1024, height=1024, quality="low"
    ).cost
    first = campaign.current_requests().first()
    assert first.estimated_cost == pytest.approx(standard_estimate / 2, abs=Decimal("0.000001"))

    batch = run(campaign)
    assert batch.provider_status == "completed" and batch.lines == 6
    rows = {r.campaign_row: r for r in campaign.current_requests()}
    assert [rows[n].status for n in range(1, 7)] == [
        Status.SUCCEEDED,
        Status.SUCCEEDED,
        Status.FAILED,
        Status.FAILED,
        Status.FAILED,
        Status.FAILED,
    ]
    # Every line is an Attempt of its own, with its own usage and cost at the batch price.
    attempt = rows[1].attempts.get()
    batch_sheet = PriceSheet.objects.in_force("gpt-image-2", tier=PriceSheet.Tier.BATCH)
    assert attempt.price_sheet == batch_sheet
    assert attempt.output_image_tokens == pricing.estimate_output_tokens(1024, 1024, "low")
    usage = pricing.Usage(
        input_text_tokens=attempt.input_text_tokens,
        output_image_tokens=attempt.output_image_tokens,
    )
    # Stored to the microdollar.
    assert abs(attempt.cost - pricing.cost_of_usage(usage, batch_sheet)) <= Decimal("0.000001")
    standard_cost = pricing.cost_of_usage(usage, price_sheet)
    assert abs(attempt.cost - standard_cost / 2) <= Decimal("0.000001")
    assert attempt.provider_request_id.startswith("req_")
    assert rows[1].cost == attempt.cost and rows[1].outputs.count() == 1
    assert rows[1].outputs.get().width == 1024

    failed = rows[3].attempts.get()
    assert (failed.billing, failed.retry_reason, failed.error_code) == (
        "not_billed",
        "provider_5xx",
        "server_error",
    )
    missing = rows[4].attempts.get()
    assert rows[4].failure_reason == "batch_line_missing" and missing.billing == "possibly_billed"
    garbled = rows[5].attempts.get()
    assert rows[5].failure_reason == "batch_output_unreadable"
    assert garbled.billing == "possibly_billed"
    refused = rows[6].attempts.get()
    assert (refused.billing, refused.http_status) == ("not_billed", 400)

    progress = campaign.progress()
    assert (progress.succeeded, progress.failed, progress.possibly_billed) == (2, 4, 2)
    # The ledger's promises hold for batch lines too (receipts, billing states, files).
    out = io.StringIO()
    call_command("ledger_check", "--storage", stdout=out)
    # Retry never sends the rows that may have been billed: only 3 and 6 go again.
    assert campaign.retry_failed(designer) == (2, 2)


def test_a_route_without_batches_is_refused_on_the_form(client, designer, sandbox_route):
    client.force_login(designer)
    response = client.post(
        "/campaigns/new/",
        {
            "name": "x",
            "template": TEMPLATE,
            "route": sandbox_route.pk,
            "when": "batch",
            "size": "1024x1024",
            "quality": "low",
            "output_format": "png",
            "n": "1",
            "layout": "table",
            "table": "product,headline\nl,L\n",
            "file_name_pattern": "{row}.{ext}",
            "action": "launch",
        },
    )
    assert "does not take batches" in response.content.decode()
    assert not Campaign.objects.exists()


def test_cancelling_a_batch_campaign_cancels_the_batch_and_bills_nothing(
    batch_route, designer, settings, monkeypatch
):
    monkeypatch.setattr("campaigns.models._start", lambda campaign: lambda: None)
    settings.SANDBOX_BATCH_SECONDS = 3600  # the batch would run an hour from now
    checked = check_free("product,headline\nlamp,LUMA\nchair,SIT\n", TEMPLATE)
    campaign = launch(
        owner=designer,
        name="Batch",
        route=batch_route,
        rows=checked.rows,
        template=TEMPLATE,
        mode=Campaign.Mode.BATCH,
    )
    submitted = batches.submit(campaign)
    assert campaign.progress().running == 2
    assert campaign.cancel_remaining(designer) == 2
    batches.poll()
    submitted.refresh_from_db()
    assert submitted.provider_status == "cancelled" and submitted.settled_at is not None
    for request in campaign.current_requests():
        assert request.status == Status.CANCELLED
        attempt = request.attempts.get()
        assert (attempt.billing, attempt.error_code) == ("not_billed", "batch_cancelled")
        assert request.cost == 0 and request.exposure is None


@pytest.mark.usefixtures("ledger_checked")
def test_a_worker_submits_the_batch_of_a_campaign_launched_from_its_page(
    client, batch_route, designer, celery_worker, settings
):
    settings.MEDIA_ROOT = celery_worker.media_root
    client.force_login(designer)
    response = client.post(
        "/campaigns/new/",
        {
            "name": "Overnight",
            "template": TEMPLATE,
            "route": batch_route.pk,
            "when": "batch",
            "size": "1024x1024",
            "quality": "low",
            "output_format": "png",
            "n": "1",
            "layout": "table",
            "table": "product,headline\nlamp,LUMA\nchair,SIT\n",
            "file_name_pattern": "{row}.{ext}",
            "action": "launch",
        },
    )
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    deadline = time.monotonic() + 30
    while not campaign.batches.exists():
        assert time.monotonic() < deadline, "the worker never submitted the batch"
        time.sleep(0.2)
    from campaigns.tasks import poll_campaign_batches

    while campaign.progress().running:
        assert time.monotonic() < deadline + 30, "the batch never ended"
        poll_campaign_batches.delay()  # as celery beat would
        time.sleep(0.5)
    progress = campaign.progress()
    assert progress.succeeded == 2
    page = client.get(campaign.get_absolute_url()).content.decode()
    assert "Succeeded: 2" in page and campaign.batches.get().batch_id in page
