"""Campaigns: a table checked row by row at once, launched as one submission, watched,
cancelled, retried; every row an ordinary GenerationRequest."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns import table
from campaigns.models import Campaign, launch
from studio.models import (
    Attempt,
    Budget,
    BudgetExceeded,
    GenerationRequest,
    Status,
    SubmissionFlood,
)

pytestmark = pytest.mark.django_db

DEFAULTS = table.Defaults(width=1024, height=1024, quality="low", output_format="png")
FREE = 'A spring poster for {product} that says "{headline}"'


def check_free(text: str, template: str = FREE) -> table.CheckedTable:
    return table.check(table.read_rows(text), table.free_prompt_frame(template), DEFAULTS)


def messages(checked: table.CheckedTable) -> list[str]:
    return [str(problem) for problem in checked.problems]


# --- Reading and checking the table ---------------------------------------------------------


def test_a_valid_csv_becomes_rows_with_rendered_prompts_and_labels():
    checked = check_free("product,headline,locale,size\nlamp,LUMA,en-GB,1536x1024\nchair,SIT,,\n")
    assert checked.is_valid, messages(checked)
    first, second = checked.rows
    assert first.prompt == 'A spring poster for lamp that says "LUMA"'
    assert first.labels == ["LUMA"]
    assert (first.locale, first.width, first.height) == ("en-GB", 1536, 1024)
    assert (second.number, second.width, second.quality) == (2, 1024, "low")


def test_tsv_with_a_bom_is_read_by_its_tabs():
    raw = "\ufeffproduct\theadline\tquality\nlamp, brass\tLUMA\thigh\n".encode()
    checked = check_free(table.decode(raw))
    assert checked.is_valid, messages(checked)
    assert checked.rows[0].values["product"] == "lamp, brass"
    assert checked.rows[0].quality == "high"


def test_a_file_that_is_not_utf8_is_refused_with_its_line():
    with pytest.raises(ValueError, match=r"not UTF-8.*line 2"):
        table.decode("product,headline\nlampe,\xe9t\xe9\n".encode("latin-1"))


def test_every_problem_is_reported_at_once_with_row_and_column():
    text = (
        "product,headline,size,quality,n,locale\n"
        "lamp,LUMA,1000x1000,low,1,en\n"  # size not a multiple of 16
        ",,,,,\n"  # empty row
        "chair,SIT,1024x1024,ultra,11,xx_1\n"  # quality, n, locale
        ',"two\nlines",1024x1024,low,1,en\n'  # newline in a slot; product missing
    )
    found = messages(check_free(text))
    assert (
        "Row 1, column size: Both edges must be multiples of 16 pixels (1000x1000 is not)." in found
    )
    assert "Row 2: empty row." in found
    assert any(m.startswith("Row 3, column quality: one of low") for m in found)
    assert "Row 3, column n: a whole number from 1 to 10." in found
    assert any(m.startswith("Row 3, column locale:") for m in found)
    assert any(
        m.startswith("Row 4, column headline: a slot value may not hold a line") for m in found
    )


def test_a_required_slot_left_empty_names_its_row_and_column():
    found = messages(check_free("product,headline\n,LUMA\n"))
    assert found == ["Row 1, column product: product is required by the free prompt frame."]


def test_unknown_and_missing_columns_are_named():
    found = messages(check_free("product,colour\nlamp,red\n"))
    assert any(m.startswith("Column colour: unknown column") for m in found)
    assert any(m.startswith("Column headline: missing") for m in found)


def test_a_slot_value_over_its_length_is_refused():
    found = messages(check_free("product,headline\n" + "x" * 2001 + ",LUMA\n"))
    assert found == ["Row 1, column product: at most 2,000 characters (this is 2,001)."]


def test_more_than_the_row_limit_is_one_message_and_nothing_else(settings):
    settings.CAMPAIGN_MAX_ROWS = 10_000
    text = "product,headline\n" + "lamp,LUMA\n" * 10_001
    assert messages(check_free(text)) == [
        "The table has 10,001 rows; a campaign takes at most 10,000."
    ]


def test_a_row_with_too_few_cells_is_named():
    assert messages(check_free("product,headline\nlamp\n")) == [
        "Row 1: has 1 cells; the header has 2 columns."
    ]


def test_a_localization_matrix_becomes_one_row_per_locale(seed_frames):
    frame = seed_frames["localized-image"].current_version
    matrix = (
        "slot,de-DE,fr-FR,ja-JP\n"
        "asset_type,a sale poster,a sale poster,a sale poster\n"
        "language,German,French,Japanese\n"
        "text,Frühlingsangebot,Soldes de printemps,春のセール\n"
        "typography,clean sans,clean sans,clean sans\n"
    )
    checked = table.check(table.matrix_to_rows(matrix), frame, DEFAULTS)
    assert checked.is_valid, messages(checked)
    assert [row.locale for row in checked.rows] == ["de-DE", "fr-FR", "ja-JP"]
    assert checked.rows[2].labels == ["春のセール"]


# --- Launching ------------------------------------------------------------------------------


def rows(count: int) -> list[table.RowSpec]:
    text = "product,headline\n" + "".join(f"item {i},SALE {i}\n" for i in range(1, count + 1))
    checked = check_free(text)
    assert checked.is_valid
    return checked.rows


def test_launch_makes_held_ordinary_requests_with_row_numbers(designer, sandbox_route, monkeypatch):
    monkeypatch.setattr("campaigns.models._release", lambda: None)
    campaign = launch(
        owner=designer, name="Spring", route=sandbox_route, rows=rows(3), template=FREE
    )
    requests = list(campaign.requests.order_by("campaign_row"))
    assert [r.campaign_row for r in requests] == [1, 2, 3]
    assert all(r.held and r.status == Status.QUEUED for r in requests)
    assert requests[0].expected_text_labels == ["SALE 1"]
    assert campaign.estimated_cost == sum(r.estimated_cost for r in requests)
    assert campaign.estimated_cost > 0


def test_the_submission_limit_counts_campaigns_not_images(designer, sandbox_route, settings):
    settings.SUBMISSIONS_PER_MINUTE = 2
    launch(owner=designer, name="Big", route=sandbox_route, rows=rows(30), template=FREE)
    # 30 images, one campaign: a request from the composer still fits.
    GenerationRequest.submit(
        created_by=designer,
        route=sandbox_route,
        prompt="p",
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    with pytest.raises(SubmissionFlood):
        launch(owner=designer, name="Third", route=sandbox_route, rows=rows(1), template=FREE)


def test_one_budget_check_for_the_total_and_nothing_left_behind(designer, provider_route):
    Budget.objects.create(user=designer, monthly_limit=Decimal("0.50"))
    # $0.03 a call: 16 rows fit, 17 do not.
    launch(owner=designer, name="Fits", route=provider_route, rows=rows(16), template=FREE)
    before = GenerationRequest.objects.count()
    with pytest.raises(BudgetExceeded):
        launch(owner=designer, name="Over", route=provider_route, rows=rows(1), template=FREE)
    assert GenerationRequest.objects.count() == before
    assert not Campaign.objects.filter(name="Over").exists()


# --- The pages ------------------------------------------------------------------------------


def new_campaign(client, **extra):
    data = {
        "name": "Spring",
        "template": FREE,
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "n": "1",
        "layout": "table",
        "file_name_pattern": "{row}-{locale}-{width}x{height}.{ext}",
        "action": "check",
        **extra,
    }
    return client.post(reverse("campaigns:new"), data)


@pytest.fixture
def signed_in(client, designer, sandbox_route):
    client.force_login(designer)
    return client


def test_the_check_shows_prompts_and_estimates_and_queues_nothing(signed_in, sandbox_route):
    response = new_campaign(
        signed_in, route=sandbox_route.pk, table="product,headline\nlamp,LUMA\nchair,SIT\n"
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "A spring poster for lamp that says &quot;LUMA&quot;" in page
    assert "2 rows, estimated at" in page
    assert GenerationRequest.objects.count() == 0


def test_an_invalid_table_lists_its_problems_and_launches_nothing(signed_in, sandbox_route):
    response = new_campaign(
        signed_in,
        route=sandbox_route.pk,
        table="product,headline,size\nlamp,LUMA,999x999\n,SIT,\n",
        action="launch",
    )
    page = response.content.decode()
    assert "The table has 2 problems; nothing was queued." in page
    assert "Row 1, column size:" in page
    assert "Row 2, column product:" in page
    assert not Campaign.objects.exists() and not GenerationRequest.objects.exists()


def test_an_uploaded_latin1_file_is_a_form_error(signed_in, sandbox_route):
    upload = SimpleUploadedFile("t.csv", "product,headline\nété,x\n".encode("latin-1"))
    response = new_campaign(signed_in, route=sandbox_route.pk, table_file=upload)
    assert "The file is not UTF-8 text" in response.content.decode()


def test_a_checked_upload_stays_in_the_page_for_the_launch(signed_in, sandbox_route):
    upload = SimpleUploadedFile("t.tsv", "product\theadline\nlampe\tÉTÉ\n".encode())
    response = new_campaign(signed_in, route=sandbox_route.pk, table_file=upload)
    assert "product\theadline\nlampe\tÉTÉ" in response.content.decode()
    assert response.context["form"]["table"].value() == "product\theadline\nlampe\tÉTÉ\n"


def test_a_file_csv_cannot_read_is_a_form_error_naming_its_line(signed_in, sandbox_route):
    upload = SimpleUploadedFile("t.csv", b"product,headline\nlamp,LUMA\nla\x00mp,x\n")
    response = new_campaign(signed_in, route=sandbox_route.pk, table_file=upload)
    assert response.status_code == 200
    assert "Row 2, column product: holds a control character (U+0000)" in response.content.decode()
    huge = "product,headline\n" + "x" * 200_000 + ",L\n"
    response = new_campaign(signed_in, route=sandbox_route.pk, table=huge)
    assert "The table cannot be read at line 2" in response.content.decode()


def test_launch_redirects_to_the_campaign_page(signed_in, sandbox_route, monkeypatch):
    monkeypatch.setattr("campaigns.models._release", lambda: None)
    upload = SimpleUploadedFile("t.csv", b"\xef\xbb\xbfproduct,headline\nlamp,LUMA\n")
    response = new_campaign(signed_in, route=sandbox_route.pk, table_file=upload, action="launch")
    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response.url == campaign.get_absolute_url()
    page = signed_in.get(response.url).content.decode()
    assert "Queued: 1" in page
    assert 'data-row="1"' in page


def test_a_file_name_pattern_with_unknown_fields_is_refused(signed_in, sandbox_route):
    response = new_campaign(
        signed_in,
        route=sandbox_route.pk,
        table="product,headline\nl,L\n",
        file_name_pattern="{row}-{secret.__class__}.png",
    )
    assert "Use only {row}" in response.content.decode()


# --- Watching, cancelling, retrying ------------------------------------------------------------


@pytest.fixture
def campaign(designer, sandbox_route, monkeypatch):
    monkeypatch.setattr("campaigns.models._release", lambda: None)
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    return launch(owner=designer, name="Spring", route=sandbox_route, rows=rows(4), template=FREE)


def end(request: GenerationRequest, status: str, basis: str | None = None) -> None:
    GenerationRequest.objects.filter(pk=request.pk).update(status=status, held=False)
    if basis:
        attempt = Attempt.begin(request, request.route)
        Attempt.objects.filter(pk=attempt.pk).update(
            cost_basis=basis, outcome=Attempt.Outcome.FAILED, exposure=request.estimated_cost
        )


def test_progress_counts_each_state_and_possibly_billed(campaign):
    one, two, three, _four = campaign.current_requests()
    end(one, Status.SUCCEEDED)
    end(two, Status.FAILED, basis="possibly_billed")
    end(three, Status.FAILED, basis="not_billed")
    progress = campaign.progress()
    assert (progress.succeeded, progress.failed, progress.queued) == (1, 2, 1)
    assert progress.possibly_billed == 1


def test_retry_failed_never_resends_a_row_that_may_have_been_billed(campaign, designer):
    _one, two, three, _four = campaign.current_requests()
    end(two, Status.FAILED, basis="possibly_billed")
    end(three, Status.FAILED, basis="not_billed")
    assert campaign.retry_failed(designer) == (1, 1)
    current = {r.campaign_row: r for r in campaign.current_requests()}
    assert current[3].pk != three.pk and current[3].held  # row 3 again, as a new request
    assert current[2].pk == two.pk  # row 2 left alone: it may have been billed
    # ... until the owner asks for it by hand.
    again = campaign.run_row_again(designer, 2)
    assert again.campaign_row == 2 and campaign.current_requests().get(campaign_row=2) == again
    assert campaign.progress().total == 4


def test_cancel_remaining_ends_every_row_not_ended(campaign, designer):
    first = campaign.current_requests().first()
    end(first, Status.SUCCEEDED)
    assert campaign.cancel_remaining(designer) == 3
    progress = campaign.progress()
    assert (progress.succeeded, progress.cancelled, progress.queued) == (1, 3, 0)
    assert progress.is_done
    assert campaign.status == Campaign.State.CANCELLED


def test_the_progress_partial_stops_polling_when_done(client, campaign, designer):
    client.force_login(designer)
    url = campaign.get_absolute_url() + "?part=progress"
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 200
    campaign.cancel_remaining(designer)
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 286


def test_another_designer_cannot_see_or_change_the_campaign(client, campaign, other_designer):
    client.force_login(other_designer)
    assert client.get(campaign.get_absolute_url()).status_code == 404
    assert client.post(reverse("campaigns:cancel", args=[campaign.id])).status_code == 404
    assert campaign.progress().queued == 4
