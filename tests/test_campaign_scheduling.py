"""Fair scheduling: each user with campaign rows waiting gets a share of the workers, so one
big campaign cannot starve a small one launched after it."""

from __future__ import annotations

import pytest

from campaigns.models import launch
from campaigns.scheduling import release_rows
from campaigns.tasks import _release_after_a_row
from studio.models import GenerationRequest, Status
from tests.test_campaigns import FREE, rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch, settings):
    """The ids sent to the broker, in order; launches do not release by themselves here."""
    settings.CAMPAIGN_ROWS_IN_FLIGHT = 4
    settings.CAMPAIGN_ROWS_PER_USER = 4
    monkeypatch.setattr("campaigns.models._release", lambda: None)
    ids: list = []
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: ids.append(self.id))
    return ids


def in_flight(user) -> int:
    return GenerationRequest.objects.filter(
        created_by=user, held=False, status__in=[Status.QUEUED, Status.RUNNING]
    ).count()


def finish(user, count: int) -> None:
    ids = GenerationRequest.objects.filter(
        created_by=user, held=False, status=Status.QUEUED
    ).values_list("pk", flat=True)[:count]
    GenerationRequest.objects.filter(pk__in=list(ids)).update(status=Status.SUCCEEDED)


def test_a_small_campaign_is_not_starved_by_a_big_one(
    sent, designer, other_designer, sandbox_route, django_capture_on_commit_callbacks
):
    big = launch(owner=designer, name="Big", route=sandbox_route, rows=rows(40), template=FREE)
    with django_capture_on_commit_callbacks(execute=True):
        assert release_rows() == 4  # alone, the big campaign may use every place
    assert [
        r.campaign_row
        for r in GenerationRequest.objects.filter(pk__in=sent).order_by("campaign_row")
    ] == [1, 2, 3, 4]
    assert big.progress().queued == 40  # released rows are still queued, with the workers

    small = launch(
        owner=other_designer, name="Small", route=sandbox_route, rows=rows(3), template=FREE
    )
    assert release_rows() == 0  # no place is free yet
    finish(designer, 2)
    with django_capture_on_commit_callbacks(execute=True):
        assert release_rows() == 2
    # Two users waiting: two places each. The big one has its two; the small one gets two.
    assert (in_flight(designer), in_flight(other_designer)) == (2, 2)
    finish(other_designer, 2)
    with django_capture_on_commit_callbacks(execute=True):
        release_rows()
    assert (in_flight(designer), in_flight(other_designer)) == (2, 1)
    assert small.requests.filter(held=True).count() == 0
    finish(other_designer, 1)
    with django_capture_on_commit_callbacks(execute=True):
        release_rows()
    # The small campaign is done; the big one gets every place again.
    assert (in_flight(designer), in_flight(other_designer)) == (4, 0)
    assert len(sent) == len(set(sent)) == 4 + 2 + 1 + 2


def test_requests_from_the_composer_do_not_wait(sent, designer, sandbox_route):
    launch(owner=designer, name="Big", route=sandbox_route, rows=rows(10), template=FREE)
    release_rows()
    single = GenerationRequest.submit(
        created_by=designer,
        route=sandbox_route,
        prompt="p",
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    assert not single.held


def test_a_held_row_cannot_be_claimed_nor_is_it_swept(sent, designer, sandbox_route, settings):
    from studio.tasks import sweep_requests

    campaign = launch(owner=designer, name="C", route=sandbox_route, rows=rows(1), template=FREE)
    row = campaign.requests.get()
    assert not row.claim()
    settings.QUEUED_STALE_SECONDS = -1
    sweep_requests()
    assert sent == []


def test_a_campaign_row_that_ends_frees_its_place_at_once(sent, designer, sandbox_route):
    campaign = launch(owner=designer, name="C", route=sandbox_route, rows=rows(6), template=FREE)
    release_rows()
    finish(designer, 1)
    ended = campaign.requests.filter(status=Status.SUCCEEDED).get()

    class Task:
        name = "studio.tasks.run_generation"

    _release_after_a_row(sender=Task(), args=[str(ended.pk)])
    assert in_flight(designer) == 4
