"""My requests: a grid of thumbnails (a table one click away), search by prompt text and
request ID, filters, newest first, cursor pages that need no OFFSET and no COUNT, and the
plans PostgreSQL picks for them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from studio.models import GalleryCursor, GenerationRequest, ReviewStatus, Status
from tests.test_audit import make_attempt, make_output, make_request

pytestmark = pytest.mark.django_db

URL = reverse("studio:request-list")


def ids_on(response) -> list:
    return [generation.id for generation in response.context["page"]]


@pytest.fixture
def many(designer, sandbox_route):
    """25 requests a minute apart, newest last; every fifth failed."""
    now = timezone.now()
    return [
        make_request(
            designer,
            sandbox_route,
            created_at=now - timedelta(minutes=25 - i),
            prompt=f'Poster number {i} "SALE"',
            status=Status.FAILED if i % 5 == 0 else Status.SUCCEEDED,
        )
        for i in range(25)
    ]


def test_the_grid_shows_a_thumbnail_per_request_newest_first(client, designer, sandbox_route):
    client.force_login(designer)
    old = make_request(designer, sandbox_route, created_at=timezone.now() - timedelta(days=1))
    new = make_request(designer, sandbox_route, n=3)
    for index in range(3):
        make_output(make_attempt(new, index + 1), index=index) if index == 0 else None
    response = client.get(URL)
    assert ids_on(response) == [new.id, old.id]
    page = response.content.decode()
    assert 'data-testid="gallery"' in page
    thumbnail = reverse("studio:output-thumbnail", args=[new.outputs.get().pk])
    assert f'src="{thumbnail}"' in page
    assert 'title="3 variants"' in page
    table = client.get(URL, {"view": "table"}).content.decode()
    assert 'data-testid="request-table"' in table and 'data-testid="gallery"' not in table


def test_cursor_pages_walk_everything_once_without_offset_or_count(
    client, designer, many, settings
):
    settings.REQUESTS_PER_PAGE = 10
    client.force_login(designer)
    seen, url, pages = [], URL, 0
    with CaptureQueriesContext(connection) as queries:
        while url:
            response = client.get(url)
            seen += ids_on(response)
            link = response.context["older_link"]
            url = URL + link if link else None
            pages += 1
    assert pages == 3
    assert seen == [generation.id for generation in reversed(many)]
    sql = " ".join(query["sql"].upper() for query in queries.captured_queries)
    assert "STUDIO_GENERATIONREQUEST" in sql
    assert "OFFSET" not in sql and "COUNT(" not in sql


def test_newer_goes_back_and_the_first_page_is_whole(client, designer, many, settings):
    settings.REQUESTS_PER_PAGE = 10
    client.force_login(designer)
    first = client.get(URL)
    second = client.get(URL + first.context["older_link"])
    assert first.context["newer_link"] is None
    back = client.get(URL + second.context["newer_link"])
    assert ids_on(back) == ids_on(first)
    assert back.context["newer_link"] is None


def test_a_request_created_in_the_same_microsecond_is_not_skipped(
    client, designer, sandbox_route, settings
):
    settings.REQUESTS_PER_PAGE = 1
    moment = timezone.now()
    both = {make_request(designer, sandbox_route, created_at=moment).id for _ in range(2)}
    client.force_login(designer)
    first = client.get(URL)
    second = client.get(URL + first.context["older_link"])
    assert set(ids_on(first) + ids_on(second)) == both


def test_search_by_prompt_text_and_by_request_id(client, designer, many):
    client.force_login(designer)
    assert ids_on(client.get(URL, {"q": "number 17"})) == [many[17].id]
    assert ids_on(client.get(URL, {"q": "NUMBER 17"})) == [many[17].id]
    assert ids_on(client.get(URL, {"q": str(many[3].id)})) == [many[3].id]
    prefix = str(many[4].id)[:8]
    assert many[4].id in ids_on(client.get(URL, {"q": prefix}))
    assert ids_on(client.get(URL, {"q": "nothing like this"})) == []


def test_filters_by_status_frame_review_route_and_date(
    client, designer, many, sandbox_route, provider_route, seed_frames
):
    client.force_login(designer)
    failed = {g.id for g in many if g.status == Status.FAILED}
    assert set(ids_on(client.get(URL, {"status": "failed"}))) == failed

    framed = many[7]
    framed.frame_version = seed_frames["product-hero"].current_version
    framed.save(update_fields=["frame_version"])
    assert ids_on(client.get(URL, {"frame": "product-hero"})) == [framed.id]
    assert framed.id not in ids_on(client.get(URL, {"frame": "none"}))

    make_output(make_attempt(many[9], 1), review_status=ReviewStatus.APPROVED)
    make_output(make_attempt(many[10], 1), review_status=ReviewStatus.REJECTED)
    assert ids_on(client.get(URL, {"review": "approved"})) == [many[9].id]

    elsewhere = make_request(designer, provider_route)
    assert ids_on(client.get(URL, {"route": provider_route.pk})) == [elsewhere.id]

    long_ago = make_request(designer, sandbox_route, created_at=timezone.now() - timedelta(days=40))
    day = (long_ago.created_at).date().isoformat()
    assert ids_on(client.get(URL, {"start": day, "end": day})) == [long_ago.id]


def test_bad_filter_values_are_form_errors_not_500s(client, designer, many):
    client.force_login(designer)
    response = client.get(
        URL,
        {"status": "nope", "route": "x", "start": "2026-13-01", "older": "zz", "view": "<b>"},
    )
    assert response.status_code == 200
    errors = response.context["filters"].errors
    assert {"status", "route", "start"} <= set(errors)
    assert len(ids_on(response)) == len(many[:20])


def test_only_my_own_requests(client, other_designer, many):
    client.force_login(other_designer)
    assert ids_on(client.get(URL)) == []


def test_the_htmx_filter_answers_the_results_only(client, designer, many):
    client.force_login(designer)
    response = client.get(URL, {"q": "number 1"}, headers={"HX-Request": "true"})
    assert b'id="results"' in response.content and b"<html" not in response.content


def test_cursor_round_trip():
    generation = GenerationRequest(created_at=timezone.now())
    cursor = GalleryCursor.of(generation)
    assert GalleryCursor.parse(str(cursor)) == cursor
    assert GalleryCursor.parse("99999999999999999999.abc") is None
    assert GalleryCursor.parse("") is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the plan is PostgreSQL's")
def test_postgresql_answers_search_and_pages_from_indexes(designer, many):
    """With sequential scans priced out, the planner can serve both from indexes (a plan,
    not a timing: the bench measures speed)."""

    def plan(queryset) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            return queryset.explain()

    mine = GenerationRequest.objects.filter(created_by=designer)
    cursor = GalleryCursor.of(many[10])
    page = (
        mine.filter(created_at__lte=cursor.created_at)
        .exclude(created_at=cursor.created_at, pk__gte=cursor.id)
        .order_by("-created_at", "-id")[:21]
    )
    assert "Index" in plan(page)
    assert "request_prompt_trgm_idx" in plan(
        GenerationRequest.objects.matching("poster num").order_by()
    )


def test_a_thumbnail_is_a_small_webp_made_once_and_deleted_with_its_output(
    client, designer, other_designer, sandbox_route
):
    import io

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from PIL import Image

    from studio.tasks import delete_output_file
    from studio.thumbnails import thumbnail_name

    generation = make_request(designer, sandbox_route)
    buffer = io.BytesIO()
    Image.new("RGB", (1536, 1024), (200, 40, 90)).save(buffer, "PNG")
    output = make_output(make_attempt(generation, 1))
    output.file.save("00.png", ContentFile(buffer.getvalue()))
    url = reverse("studio:output-thumbnail", args=[output.pk])
    client.force_login(designer)
    response = client.get(url)
    assert response["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(response.content)).size == (384, 256)
    assert default_storage.exists(thumbnail_name(output.pk))
    output.file.delete(save=False)  # the stored thumbnail answers from now on
    assert client.get(url).content == response.content
    client.force_login(other_designer)
    assert client.get(url).status_code == 404

    assert delete_output_file(output)
    assert not default_storage.exists(thumbnail_name(output.pk))
    client.force_login(designer)
    assert client.get(url).status_code == 404
