"""Daily rollups of the attempt ledger, so the audit dashboard stays fast at any size.

A day is *settled* when it has ended and no request created on it or after it can still
change: none is queued or running and none has a call in flight (a cancelled request's
last call still finishes and is billed). Settled days are summed once into `AuditRollup`
rows of a few kinds, each a different set of dimensions; `refresh()` (celery beat, and
`manage.py audit_rollups`) adds the days that have settled since it last ran.

The dashboard asks `grouped()` for a table: a set of dimensions, some measures, a filter.
It reads the smallest kind that holds every dimension the table groups by and every one
the filter narrows on, for the settled days in the range, and the ledger itself for the
days after; the two row sets have the same columns and are added up by the caller. When
no kind holds the dimensions (a filter on the user and the size, say), the whole range is
read from the ledger: slower, never different.

Rows are written by the same grouped query that reads the live days, so a figure cannot
depend on where it came from; the tests compare both paths on the same ledger.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Count,
    F,
    FloatField,
    IntegerField,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import Cast, Floor, Greatest, Ln, TruncDate
from django.utils import timezone

from review.models import AuditRollup, AuditRollupState
from studio.models import TERMINAL_STATUSES, Attempt, GenerationRequest

log = logging.getLogger(__name__)

Kind = AuditRollup.Kind

# Latency is summed into bands 2% wide (band b holds [1.02^b, 1.02^(b+1)) ms), so a
# percentile read from bands is within 1% of the exact one.
BAND_RATIO = 1.02
_LN_RATIO = math.log(BAND_RATIO)

# Each dimension and where the ledger keeps it: on the attempt, or on its request. The
# rollup's columns carry the dimensions' names.
LEDGER_FIELDS = {
    "route_id": "route_id",
    "route_owner": "route_owner",
    "model_requested": "model_requested",
    "model_sent": "model_sent",
    "retry_reason": "retry_reason",
    "outcome": "outcome",
    "cost_basis": "cost_basis",
    "submitted_route_id": "request__route_id",
    "request_status": "request__status",
    "user_id": "request__created_by_id",
    "quality": "request__quality",
    "width": "request__width",
    "height": "request__height",
}

# The audit filter's narrowing fields, by the dimension each one needs.
FILTER_DIMENSIONS = {
    "route_id": "route_id",
    "submitted_to_id": "submitted_route_id",
    "user_id": "user_id",
    "status": "request_status",
    "outcome": "outcome",
    "reason": "retry_reason",
    "basis": "cost_basis",
    "owner": "route_owner",
    "model": "model_sent",
    "quality": "quality",
}


def latency_band():
    """The band of an attempt's latency, in SQL (PostgreSQL natively, SQLite through the
    math functions Django registers)."""
    milliseconds = Cast(Greatest(F("latency_ms"), Value(1)), FloatField())
    return Cast(Floor(Ln(milliseconds) / Value(_LN_RATIO)), IntegerField())


def band_value(band: int) -> float:
    """The latency (ms) a band stands for: its geometric middle."""
    return BAND_RATIO ** (band + 0.5)


LOW = (
    "route_id",
    "submitted_route_id",
    "route_owner",
    "model_requested",
    "model_sent",
    "retry_reason",
    "outcome",
    "cost_basis",
    "request_status",
)
# Smallest first: a table reads the first kind that has every dimension it needs.
KIND_DIMENSIONS: dict[str, tuple[str, ...]] = {
    Kind.CALLS: LOW,
    Kind.SETTINGS: (*LOW, "quality", "width", "height"),
    Kind.USERS: (*LOW, "user_id"),
    Kind.LATENCY: ("route_id", "route_owner", "request_status", "band"),
}

# Conversation turns: the image tool's cost and the mainline model's tokens and cost.
ASSISTANT = ("image_tool_cost", "mainline_cost", "mainline_input_tokens", "mainline_output_tokens")
MEASURES = (
    "attempts",
    "cost",
    "exposure",
    "retries",
    "requests",
    "compared",
    "estimated",
    "actual",
    *ASSISTANT,
)
# The measures that need no look at the request.
SPEND = ("attempts", "cost", "exposure", "retries", "image_tool_cost")


def live_measures(names: Iterable[str] = MEASURES) -> dict:
    """The measures over attempts. Requests are counted once, by their first attempt, and
    compared (estimate against actual) only when they ended with both figures known."""
    first = Q(number=1)
    known = first & Q(
        request__cost__isnull=False,
        request__estimated_cost__isnull=False,
        request__status__in=TERMINAL_STATUSES,
    )
    every = {
        # Counted on `number` (never null): the audit index holds every column read.
        "attempts": Count("number"),
        "cost": Sum("cost"),
        # What attempts of unknown cost may have cost at most (studio.billing): only they
        # carry an exposure.
        "exposure": Sum("exposure"),
        "image_tool_cost": Sum("image_tool_cost"),
        "mainline_cost": Sum("mainline_cost"),
        "mainline_input_tokens": Sum("mainline_input_tokens"),
        "mainline_output_tokens": Sum("mainline_output_tokens"),
        "retries": Count("number", filter=Q(number__gt=1)),
        "requests": Count("number", filter=first),
        "compared": Count("number", filter=known),
        "estimated": Sum("request__estimated_cost", filter=known),
        "actual": Sum("request__cost", filter=known),
    }
    return {name: every[name] for name in names}


def live_grouped(attempts: QuerySet[Attempt], dimensions: Iterable[str], measures) -> QuerySet:
    """GROUP BY the dimensions over attempts; rows are dicts named like rollup columns."""
    computed = {"day": TruncDate("started_at"), "band": latency_band()}
    dimensions = list(dimensions)
    plain = [name for name in dimensions if LEDGER_FIELDS.get(name) == name]
    derived = {
        name: computed[name] if name in computed else F(LEDGER_FIELDS[name])
        for name in dimensions
        if name not in plain
    }
    if "band" in derived:
        attempts = attempts.filter(latency_ms__isnull=False)
    return attempts.order_by().values(*plain, **derived).annotate(**live_measures(measures))


def rollup_grouped(rollups: QuerySet[AuditRollup], dimensions, measures) -> QuerySet:
    return rollups.order_by().values(*dimensions).annotate(**{name: Sum(name) for name in measures})


# --- What a filter needs -------------------------------------------------------------------


def _set(value) -> bool:
    return value not in (None, "")


def filter_dimensions(filters) -> set[str]:
    """The dimensions an `audit.AuditFilter` narrows on (dates aside)."""
    needed = {dim for name, dim in FILTER_DIMENSIONS.items() if _set(getattr(filters, name))}
    if filters.size:
        needed.update(("width", "height"))
    if filters.fallback:
        needed.update(("route_id", "submitted_route_id"))
    return needed


def covering_kind(dimensions: set[str]) -> str | None:
    for kind, held in KIND_DIMENSIONS.items():
        if dimensions <= set(held):
            return kind
    return None


SIZE_PATTERN = re.compile(r"^(\d{2,5})x(\d{2,5})$")  # the audit's size filter, WIDTHxHEIGHT


def narrowed(rows: QuerySet, filters, fields: dict[str, str] | None = None) -> QuerySet:
    """Rows narrowed by an `audit.AuditFilter` (dates aside): rollup rows by their columns,
    or the ledger's attempts through `fields` (LEDGER_FIELDS)."""

    def field(dimension: str) -> str:
        return fields[dimension] if fields else dimension

    wanted = {name: getattr(filters, name) for name in FILTER_DIMENSIONS}
    rows = rows.filter(
        **{field(FILTER_DIMENSIONS[name]): value for name, value in wanted.items() if _set(value)}
    )
    if match := SIZE_PATTERN.match(filters.size):
        rows = rows.filter(
            **{field("width"): int(match.group(1)), field("height"): int(match.group(2))}
        )
    if filters.fallback:
        rows = rows.exclude(**{field("route_id"): F(field("submitted_route_id"))})
    return rows


# --- Reading -------------------------------------------------------------------------------


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


@dataclass(frozen=True)
class Coverage:
    """Where the days of a filter's range are read from."""

    built_through: date | None  # the rollups hold every settled day up to this one

    @classmethod
    def now(cls) -> Coverage:
        state = AuditRollupState.objects.filter(
            time_zone=timezone.get_current_timezone_name()
        ).first()
        return cls(state.built_through if state else None)

    def split(self, start: date | None, end: date | None):
        """(first, last) days to read from rollups and the first day to read from the
        ledger (None when the rollups cover the whole range); (None, None) when the
        rollups hold none of the range and everything is read from the ledger."""
        through = self.built_through
        if through is None or (start is not None and start > through):
            return None, None
        rolled = (start, min(end, through) if end else through)
        live_from = None if end is not None and end <= through else through + timedelta(days=1)
        return rolled, live_from


def grouped(
    filters,
    attempts: QuerySet[Attempt],
    coverage: Coverage,
    dimensions: Iterable[str],
    measures: Iterable[str] = MEASURES,
) -> list[dict]:
    """One table's rows: `dimensions` and `measures` over the filtered ledger, read from
    the rollups where they can answer and from `attempts` (the filtered ledger) elsewhere.
    Rows from the two sources may repeat a group; callers add them up."""
    dimensions, measures = list(dimensions), list(measures)
    # Every kind is by day: the day is never what a kind lacks.
    kind = covering_kind(set(dimensions) - {"day"} | filter_dimensions(filters))
    rolled, live_from = coverage.split(filters.start, filters.end)
    if kind is None or rolled is None:
        return list(live_grouped(attempts, dimensions, measures))
    rollups = narrowed(AuditRollup.objects.filter(kind=kind), filters)
    first, last = rolled
    if first is not None:
        rollups = rollups.filter(day__gte=first)
    rows = list(rollup_grouped(rollups.filter(day__lte=last), dimensions, measures))
    if live_from is not None:
        later = attempts.filter(started_at__gte=day_start(live_from))
        rows.extend(live_grouped(later, dimensions, measures))
    return rows


# --- Building ------------------------------------------------------------------------------


def quiet_period() -> timedelta:
    """How long after a request ends a worker may still write to it: a task that claimed
    it before it was cancelled, or before the sweep settled it, lives until the hard
    time limit and may still record its call and cost."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + settings.LEASE_GRACE_SECONDS)


def first_unsettled_day(now: datetime | None = None) -> date | None:
    """The first day a request that can still change was created on: one queued or
    running, one that ended within the quiet period, or one with a call in flight. Its
    attempts, and those of later days, may change."""
    now = now or timezone.now()
    open_since = GenerationRequest.objects.filter(
        ~Q(status__in=TERMINAL_STATUSES) | Q(finished_at__gte=now - quiet_period())
    ).aggregate(first=Min("created_at"))["first"]
    calling_since = Attempt.objects.filter(outcome=Attempt.Outcome.CALLING).aggregate(
        first=Min("request__created_at")
    )["first"]
    moments = [moment for moment in (open_since, calling_since) if moment is not None]
    return timezone.localdate(min(moments)) if moments else None


BATCH = 5000


def build(first: date, last: date) -> int:
    """Sum the days first..last into rollups of every kind (replacing any there). Rows."""
    AuditRollup.objects.filter(day__gte=first, day__lte=last).delete()
    attempts = Attempt.objects.filter(
        started_at__gte=day_start(first), started_at__lt=day_start(last + timedelta(days=1))
    )
    written = 0
    for kind, dimensions in KIND_DIMENSIONS.items():
        measures = ["attempts"] if kind == Kind.LATENCY else MEASURES
        rows = live_grouped(attempts, ["day", *dimensions], measures)
        batch = []
        for row in rows.iterator(chunk_size=BATCH):
            batch.append(AuditRollup(kind=kind, **{k: v for k, v in row.items() if v is not None}))
            if len(batch) >= BATCH:
                written += len(AuditRollup.objects.bulk_create(batch))
                batch = []
        written += len(AuditRollup.objects.bulk_create(batch))
    if connection.vendor == "postgresql" and written > BATCH:
        # Fresh statistics, or the planner guesses a handful of rows and reads them badly.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {AuditRollup._meta.db_table}")
    return written


CHUNK_DAYS = 7  # days built per transaction: SQLite's one writer waits at most that long


def refresh(now: datetime | None = None, rebuild: bool = False) -> dict:
    """Add the days settled since the last run. Safe to run anywhere, any number of times:
    runs take turns on the state row. A changed time zone, or `rebuild`, starts over.

    Days are built a week per transaction, the state moving forward after each, so other
    writers are never held up for long and the dashboard reads every finished week.
    """
    now = now or timezone.now()
    zone = timezone.get_current_timezone_name()
    today = timezone.localdate(now)
    with transaction.atomic():
        state, _ = AuditRollupState.objects.select_for_update().get_or_create(pk=1)
        if rebuild or state.time_zone != zone:
            AuditRollup.objects.all().delete()
            state.built_through, state.time_zone = None, zone
        through = state.built_through
        unsettled = first_unsettled_day(now)
        if through is not None and unsettled is not None and unsettled <= through:
            # A settled day moved again (rows imported or edited by hand): read it live.
            AuditRollup.objects.filter(day__gte=unsettled).delete()
            log.warning("audit rollups: days from %s changed; they are read live again", unsettled)
            through = unsettled - timedelta(days=1)
        last = today - timedelta(days=1)
        if unsettled is not None:
            last = min(last, unsettled - timedelta(days=1))
        if through is None:
            oldest = Attempt.objects.aggregate(first=Min("started_at"))["first"]
            # Nothing before the oldest attempt: every earlier day is built, and empty.
            through = min(timezone.localdate(oldest) - timedelta(days=1), last) if oldest else last
        state.built_through = through
        state.refreshed_at = now
        state.save()
    days = rows = 0
    while through < last:
        first, chunk_last = through + timedelta(days=1), min(last, through + timedelta(CHUNK_DAYS))
        with transaction.atomic():
            state = AuditRollupState.objects.select_for_update().get(pk=1)
            if (state.built_through, state.time_zone) != (through, zone):
                break  # another run moved on meanwhile; it carries on from there
            rows += build(first, chunk_last)
            state.built_through = through = chunk_last
            state.save(update_fields=["built_through"])
        days += (chunk_last - first).days + 1
    return {"days": days, "rows": rows, "through": through.isoformat()}
