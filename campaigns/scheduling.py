"""Fair scheduling: a campaign's rows wait (held) until they get a share of the workers.

At most CAMPAIGN_ROWS_IN_FLIGHT campaign rows are with the workers at once (queued on the
broker or running), and each user with rows waiting gets an equal share of that, no more
than CAMPAIGN_ROWS_PER_USER. Rows are handed out one per user in turn, so a 1,000-row
campaign cannot starve a three-row one launched after it. Requests made in the composer do
not wait here: they go to the broker at once, as before.

`release_rows` runs after a campaign is launched, after each campaign row ends (a Celery
signal) and from celery beat; any number of copies may run at once (rows are locked with
SKIP LOCKED and released by a conditional update).
"""

from __future__ import annotations

import logging
from collections import deque

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count

from studio.models import GenerationRequest, Status

log = logging.getLogger(__name__)


def in_flight_by_user() -> dict[int, int]:
    """Campaign rows released to the workers and not ended, per user."""
    rows = (
        GenerationRequest.objects.filter(
            campaign__isnull=False,
            held=False,
            status__in=[Status.QUEUED, Status.RUNNING],
        )
        .order_by()
        .values_list("created_by")
        .annotate(count=Count("pk"))
    )
    return dict(rows)


def waiting() -> models.QuerySet[GenerationRequest]:
    """Held rows of campaigns run now (a batch campaign's rows wait for their batch)."""
    return GenerationRequest.objects.filter(held=True, status=Status.QUEUED).exclude(
        campaign__mode="batch"
    )


def waiting_users() -> list[int]:
    return list(waiting().order_by().values_list("created_by", flat=True).distinct())


def allowances() -> dict[int, int]:
    """How many more rows each waiting user may have released now."""
    waiting = waiting_users()
    if not waiting:
        return {}
    in_flight = in_flight_by_user()
    capacity = settings.CAMPAIGN_ROWS_IN_FLIGHT
    free = capacity - sum(in_flight.values())
    share = max(1, min(settings.CAMPAIGN_ROWS_PER_USER, capacity // len(waiting)))
    wanted = {user: max(0, share - in_flight.get(user, 0)) for user in waiting}
    # Hand out the free places one per user in turn, fewest in flight first.
    order = deque(sorted(wanted, key=lambda user: (in_flight.get(user, 0), user)))
    given = dict.fromkeys(wanted, 0)
    while free > 0 and order:
        user = order.popleft()
        if given[user] < wanted[user]:
            given[user] += 1
            free -= 1
            order.append(user)
    return {user: count for user, count in given.items() if count}


def release_rows() -> int:
    """Release each waiting user's share of held rows (oldest campaign, lowest row first)
    to the workers; returns how many were released."""
    released: list[GenerationRequest] = []
    with transaction.atomic():
        for user, count in allowances().items():
            rows = list(
                waiting()
                .select_for_update(skip_locked=True, of=("self",))
                .filter(created_by_id=user)
                .order_by("created_at", "campaign_row")
                .only("id")[:count]
            )
            if not rows:
                continue
            GenerationRequest.objects.filter(
                pk__in=[row.pk for row in rows], held=True, status=Status.QUEUED
            ).update(held=False)
            released += rows
        for row in released:
            transaction.on_commit(row.enqueue)
    if released:
        log.info("campaigns: released %d rows to the workers", len(released))
    return len(released)
