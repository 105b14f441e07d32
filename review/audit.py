"""The cost and route audit: one filtered ledger of attempts, its aggregates and its charts.

Every figure on the dashboard, every row of the attempt list and every line of the CSV
export comes from `filtered_attempts()`, so a drill-down shows exactly the attempts a
figure counted. Aggregates run in the database (GROUP BY over a few columns, rolled up
here), so a page makes the same number of queries whatever the number of rows.

Money is kept apart by contract: real spend priced per token (OpenAI's price sheet), real
spend at a provider's flat price per call, and the sandbox's simulated cost. An attempt
whose price is unknown counts as unpriced, never as $0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import groupby
from operator import itemgetter
from types import SimpleNamespace
from urllib.parse import urlencode

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    FilteredRelation,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from review import rollups
from studio import imagerules
from studio.billing import billing_of
from studio.forms import FilterDateField
from studio.models import (
    Attempt,
    Budget,
    GenerationRequest,
    OutputImage,
    ReviewStatus,
    Route,
    Status,
)
from studio.pricing import money

SANDBOX_OWNER = "sandbox"
DEFAULT_DAYS = 30
TABLE_ROWS = 12  # rows per breakdown table before the rest are summed into "others"
DAILY_BARS_UP_TO = 92  # longer ranges are charted by week
LATENCY_PERCENTILES = (0.5, 0.95)
TERMINAL = [Status.SUCCEEDED, Status.FAILED, Status.REFUSED, Status.CANCELLED]
Basis = Attempt.CostBasis
Outcome = Attempt.Outcome


# --- Filters -------------------------------------------------------------------------------

SIZE_PATTERN = rollups.SIZE_PATTERN


def _choices(pairs, empty: str = "any") -> list[tuple[str, str]]:
    return [("", empty), *[(value, label) for value, label in pairs]]


class AuditFilterForm(forms.Form):
    """The GET filters shared by the dashboard, the attempt list and the CSV export."""

    start = FilterDateField(required=False)
    end = FilterDateField(required=False)
    route = forms.ChoiceField(required=False, label="Attempt's route")
    submitted_to = forms.ChoiceField(required=False, label="Request's route")
    user = forms.CharField(required=False, max_length=150, label="User name")
    status = forms.ChoiceField(
        required=False, choices=_choices(Status.choices), label="Request status"
    )
    outcome = forms.ChoiceField(
        required=False, choices=_choices(Outcome.choices), label="Attempt outcome"
    )
    reason = forms.ChoiceField(
        required=False, choices=_choices(Attempt.RetryReason.choices), label="Retry reason"
    )
    basis = forms.ChoiceField(required=False, choices=_choices(Basis.choices), label="Cost basis")
    owner = forms.CharField(required=False, max_length=100, label="Route owner")
    model = forms.CharField(required=False, max_length=100, label="Model sent")
    quality = forms.ChoiceField(
        required=False, choices=_choices((q, q) for q in imagerules.QUALITIES)
    )
    size = forms.CharField(required=False, max_length=11, help_text="e.g. 1024x1024")
    fallback = forms.BooleanField(required=False, label="Only attempts on a fallback route")

    def __init__(self, *args, routes: Iterable[Route] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.routes = list(routes)
        choices = _choices((r.name, str(r)) for r in self.routes)
        self.fields["route"].choices = self.fields["submitted_to"].choices = choices

    def clean_size(self) -> str:
        size = self.cleaned_data["size"].strip().lower()
        if size and not SIZE_PATTERN.match(size):
            raise forms.ValidationError("Write the size as WIDTHxHEIGHT, e.g. 1536x1024.")
        return size

    def clean(self) -> dict:
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start > end:
            self.add_error("end", "The end date is before the start date.")
        return cleaned


@dataclass(frozen=True)
class AuditFilter:
    """What the audit is narrowed to. Dates are inclusive days in the studio's time zone."""

    start: date | None = None
    end: date | None = None
    route: str = ""
    route_id: int | None = None
    submitted_to: str = ""
    submitted_to_id: int | None = None
    user: str = ""
    user_id: int | None = None
    status: str = ""
    outcome: str = ""
    reason: str = ""
    basis: str = ""
    owner: str = ""
    model: str = ""
    quality: str = ""
    size: str = ""
    fallback: bool = False

    PARAMS = (
        "route",
        "submitted_to",
        "user",
        "status",
        "outcome",
        "reason",
        "basis",
        "owner",
        "model",
        "quality",
        "size",
    )

    def params(self, **changes) -> dict[str, str]:
        """GET parameters that reproduce this filter (with changes). The dates are always
        there, empty meaning open-ended, so "all time" survives a round trip."""
        values = {
            "start": self.start.isoformat() if self.start else "",
            "end": self.end.isoformat() if self.end else "",
            **{name: getattr(self, name) for name in self.PARAMS},
            "fallback": "1" if self.fallback else "",
        }
        for name, value in changes.items():
            values[name] = value.isoformat() if isinstance(value, date) else str(value or "")
        return {name: value for name, value in values.items() if value or name in ("start", "end")}

    def querystring(self, **changes) -> str:
        return urlencode(self.params(**changes))

    def describe(self) -> str:
        if self.start and self.end:
            period = f"{self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}"
        elif self.start:
            period = f"from {self.start:%Y-%m-%d}"
        elif self.end:
            period = f"up to {self.end:%Y-%m-%d}"
        else:
            period = "all time"
        narrowed = [f"{name} {getattr(self, name)}" for name in self.PARAMS if getattr(self, name)]
        if self.fallback:
            narrowed.append("fallback attempts only")
        return ", ".join([period, *narrowed])


def read_filters(params, today: date | None = None) -> tuple[AuditFilter, AuditFilterForm]:
    """The filter from GET parameters, and the bound form that shows it (with any errors).

    With no dates in the parameters the audit covers the last 30 days; dates present but
    empty mean no bound. Invalid values are reported on the form and ignored.
    """
    today = today or timezone.localdate()
    routes = list(Route.objects.only("id", "name", "owner", "pricing_mode"))
    data = params.copy()
    if "start" not in data and "end" not in data:
        data["start"] = (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        data["end"] = today.isoformat()
    form = AuditFilterForm(data, routes=routes)
    form.is_valid()
    values = {name: value for name, value in form.cleaned_data.items() if value not in (None, "")}
    route_ids = {route.name: route.pk for route in routes}
    for name in ("route", "submitted_to"):
        if values.get(name):
            values[f"{name}_id"] = route_ids[values[name]]
    if values.get("user"):
        user = get_user_model().objects.filter(username=values["user"]).only("pk").first()
        # An unknown name matches nothing rather than everything.
        values["user_id"] = user.pk if user else 0
    return AuditFilter(**values), form


day_start = rollups.day_start


def filtered_attempts(filters: AuditFilter) -> QuerySet[Attempt]:
    """The attempts the audit is about: the one queryset every page and export starts from."""
    attempts = Attempt.objects.order_by()
    if filters.start:
        attempts = attempts.filter(started_at__gte=day_start(filters.start))
    if filters.end:
        attempts = attempts.filter(started_at__lt=day_start(filters.end + timedelta(days=1)))
    return rollups.narrowed(attempts, filters, rollups.LEDGER_FIELDS)


# --- Money, kept apart by contract ---------------------------------------------------------


@dataclass
class Spend:
    """Attempts and their cost, split by contract. Sums are None when nothing was priced."""

    attempts: int = 0
    token_cost: Decimal | None = None  # real routes, usage x price sheet
    per_call_cost: Decimal | None = None  # real routes, the provider's flat price
    simulated_cost: Decimal | None = None  # the sandbox: never billed
    unpriced: int = 0  # real-route attempts billed at a price nobody knows
    possibly_billed: int = 0  # real-route attempts that may have been billed
    exposure: Decimal | None = None  # at most this much, over attempts of unknown cost
    failed: int = 0
    retries: int = 0
    # Conversation turns (real routes): the image tool's cost, the mainline model's.
    image_tool_cost: Decimal | None = None
    mainline_cost: Decimal | None = None
    mainline_input_tokens: int = 0
    mainline_output_tokens: int = 0

    def add_cost(self, owner: str, basis: str, cost: Decimal | None) -> None:
        if cost is None:
            return
        if owner == SANDBOX_OWNER:
            self.simulated_cost = (self.simulated_cost or 0) + cost
        elif basis == Basis.PER_CALL:
            self.per_call_cost = (self.per_call_cost or 0) + cost
        elif basis == Basis.TOKENS:
            self.token_cost = (self.token_cost or 0) + cost

    def add(self, other: Spend) -> None:
        self.attempts += other.attempts
        self.unpriced += other.unpriced
        self.possibly_billed += other.possibly_billed
        self.failed += other.failed
        self.retries += other.retries
        self.mainline_input_tokens += other.mainline_input_tokens
        self.mainline_output_tokens += other.mainline_output_tokens
        for name in (
            "token_cost",
            "per_call_cost",
            "simulated_cost",
            "exposure",
            "image_tool_cost",
            "mainline_cost",
        ):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                setattr(self, name, (mine or 0) + theirs)

    @property
    def unknown_cost(self) -> int:
        """Real-route attempts whose cost is not known: billed unpriced or possibly billed."""
        return self.unpriced + self.possibly_billed

    @property
    def real_cost(self) -> Decimal:
        """Token-priced plus per-call spend: what real routes cost, both contracts added."""
        return (self.token_cost or Decimal(0)) + (self.per_call_cost or Decimal(0))

    @property
    def has_real(self) -> bool:
        return self.token_cost is not None or self.per_call_cost is not None

    @property
    def failure_percent(self) -> float | None:
        return 100 * self.failed / self.attempts if self.attempts else None


def spend_of(row: dict) -> Spend:
    """The Spend of one grouped row (route owner, cost basis and outcome among its keys)."""
    owner, basis = row["route_owner"], row["cost_basis"]
    real = owner != SANDBOX_OWNER
    spend = Spend(
        attempts=row["attempts"],
        unpriced=row["attempts"] if basis == Basis.UNPRICED and real else 0,
        possibly_billed=row["attempts"] if basis == Basis.POSSIBLY_BILLED and real else 0,
        exposure=row.get("exposure") if real else None,
        failed=row["attempts"] if row["outcome"] == Outcome.FAILED else 0,
        retries=row["retries"],
    )
    if real:
        spend.image_tool_cost = row.get("image_tool_cost")
        spend.mainline_cost = row.get("mainline_cost")
        spend.mainline_input_tokens = row.get("mainline_input_tokens") or 0
        spend.mainline_output_tokens = row.get("mainline_output_tokens") or 0
    spend.add_cost(owner, basis, row["cost"])
    if basis == Basis.UNPRICED and row.get("image_tool_cost") is not None:
        # A conversation turn whose mainline tokens have no price: its image tool's cost
        # is known and spent (simulated on the sandbox); only the rest is unpriced.
        spend.add_cost(owner, Basis.TOKENS, row["image_tool_cost"])
    return spend


SPEND_KEYS = ("route_owner", "cost_basis", "outcome")


# --- Percentiles ---------------------------------------------------------------------------


def interpolate_percentile(ranked, count: int, fraction: float) -> float:
    """percentile_cont over `count` sorted values, of which `ranked(rank)` (0-based) gives
    the two nearest the percentile's position."""
    position = fraction * (count - 1)
    lower, upper = math.floor(position), math.ceil(position)
    low = ranked(lower)
    return low + (ranked(upper) - low) * (position - lower)


def latency_label(milliseconds: float | None) -> str:
    """Three significant figures, as precise as latency bands are: 840 ms, 12.3 s, 151 s."""
    if milliseconds is None:
        return "—"
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    seconds = milliseconds / 1000
    return f"{seconds:.3g} s" if seconds < 100 else f"{seconds:.0f} s"


def percentiles_from_bands(
    bands: dict[int, int], fractions: tuple[float, ...] = LATENCY_PERCENTILES
) -> dict[float, float]:
    """Percentiles (ms) of latencies counted by band, as percentile_cont would compute them
    if every latency were its band's middle: within 1% of the exact figures."""
    ordered = sorted(bands.items())
    count = sum(number for _, number in ordered)
    ends, seen = [], 0
    for band, number in ordered:
        seen += number
        ends.append((seen, band))

    def ranked(rank: int) -> float:
        for end, band in ends:
            if rank < end:
                return rollups.band_value(band)
        raise IndexError(rank)

    return {fraction: interpolate_percentile(ranked, count, fraction) for fraction in fractions}


def latency_percentiles(rows: Iterable[dict]) -> dict[int, dict[float, float]]:
    """Percentiles per route from rows of (route_id, band, attempts)."""
    by_route: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        by_route[row["route_id"]][row["band"]] += row["attempts"]
    return {route_id: percentiles_from_bands(bands) for route_id, bands in by_route.items()}


# --- Dashboard aggregates ------------------------------------------------------------------


@dataclass
class Row:
    """One line of a breakdown table, with the filter change that drills down to it."""

    label: str
    drill: dict = field(default_factory=dict)
    spend: Spend = field(default_factory=Spend)
    note: str = ""
    href: str = ""
    bars: list[Segment] = field(default_factory=list)


@dataclass
class RouteStats:
    route_id: int
    name: str
    owner: str
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    unknown: int = 0
    in_flight: int = 0
    p50: float | None = None
    p95: float | None = None
    spend: Spend = field(default_factory=Spend)
    bars: list[Segment] = field(default_factory=list)
    href: str = ""
    failed_href: str = ""

    @property
    def p50_label(self) -> str:
        return latency_label(self.p50)

    @property
    def p95_label(self) -> str:
        return latency_label(self.p95)

    @property
    def failure_percent(self) -> float | None:
        """Failed or unknown-outcome calls among those that finished, in percent."""
        finished = self.succeeded + self.failed + self.unknown
        return 100 * (self.failed + self.unknown) / finished if finished else None


@dataclass
class ReasonStats:
    reason: str
    attempts: int = 0
    unpriced: int = 0
    by_route: dict = field(default_factory=dict)
    bars: list[Segment] = field(default_factory=list)
    href: str = ""


@dataclass
class Fallback:
    from_route: str
    to_route: str
    spend: Spend = field(default_factory=Spend)
    href: str = ""


@dataclass
class EstimateVsActual:
    """Requests of one route (one contract): the estimate made at submission against what
    all their attempts cost, retries and fallbacks included."""

    route_id: int
    name: str = ""
    owner: str = ""
    pricing_mode: str = ""
    requests: int = 0
    compared: int = 0  # ended with both figures known
    estimated: Decimal | None = None
    actual: Decimal | None = None

    def add(self, requests: int, compared: int, estimated, actual) -> None:
        self.requests += requests
        self.compared += compared
        if estimated is not None:
            self.estimated = (self.estimated or 0) + estimated
        if actual is not None:
            self.actual = (self.actual or 0) + actual

    @property
    def not_compared(self) -> int:
        """Requests still running, unpriced, or without an estimate: not counted as $0."""
        return self.requests - self.compared

    @property
    def simulated(self) -> bool:
        return self.owner == SANDBOX_OWNER

    @property
    def difference(self) -> Decimal | None:
        if self.estimated is None or self.actual is None:
            return None
        return self.actual - self.estimated

    @property
    def difference_size(self) -> Decimal | None:
        return None if self.difference is None else abs(self.difference)


@dataclass
class BudgetUse:
    label: str
    limit: Decimal
    spent: Decimal
    username: str = ""
    href: str = ""

    @property
    def share(self) -> float:
        return float(self.spent / self.limit) if self.limit else 1.0

    @property
    def over(self) -> bool:
        return self.spent > self.limit


def _ranked(rows: list[Row], limit: int = TABLE_ROWS) -> list[Row]:
    """Most real spend first (then simulated, then attempts); the tail summed as "others"."""
    rows.sort(
        key=lambda row: (row.spend.real_cost, row.spend.simulated_cost or 0, row.spend.attempts),
        reverse=True,
    )
    if len(rows) <= limit:
        return rows
    others = Row(label=f"{len(rows) - limit + 1} others", note="not broken down here")
    for row in rows[limit - 1 :]:
        others.spend.add(row.spend)
    return [*rows[: limit - 1], others]


BREAKDOWN_KEYS = (
    "route_id",
    "submitted_route_id",
    "route_owner",
    "model_requested",
    "model_sent",
    "retry_reason",
    "outcome",
    "cost_basis",
)


def attempt_breakdowns(rows: Iterable[dict]) -> dict:
    """Totals, owners, models, routes, retry reasons, fallbacks and estimate against actual,
    rolled up here from rows grouped by BREAKDOWN_KEYS (a few hundred at most: routes,
    owners, models, reasons, outcomes and cost bases are small sets).

    Requests are counted once, by their first attempt: estimate against actual covers the
    requests whose first attempt is in the filter.
    """
    total = Spend()
    owners: dict[str, Row] = {}
    models: dict[tuple[str, str], Row] = {}
    routes: dict[int, RouteStats] = {}
    reasons: dict[str, ReasonStats] = {}
    fallbacks: dict[tuple[int, int], Spend] = {}
    estimates: dict[int, EstimateVsActual] = {}
    for row in rows:
        owner, outcome = row["route_owner"], row["outcome"]
        spend = spend_of(row)
        total.add(spend)
        owners.setdefault(owner, Row(label=owner, drill={"owner": owner})).spend.add(spend)
        pair = (row["model_requested"], row["model_sent"])
        label = pair[0] if pair[0] == pair[1] else f"{pair[0]} → {pair[1]}"
        models.setdefault(pair, Row(label=label, drill={"model": pair[1]})).spend.add(spend)
        stats = routes.setdefault(
            row["route_id"], RouteStats(route_id=row["route_id"], name="", owner=owner)
        )
        stats.attempts += row["attempts"]
        stats.spend.add(spend)
        if outcome == Outcome.SUCCEEDED:
            stats.succeeded += row["attempts"]
        elif outcome == Outcome.FAILED:
            stats.failed += row["attempts"]
        elif outcome == Outcome.UNKNOWN:
            stats.unknown += row["attempts"]
        else:
            stats.in_flight += row["attempts"]
        if row["retry_reason"]:
            reason = reasons.setdefault(row["retry_reason"], ReasonStats(row["retry_reason"]))
            reason.attempts += row["attempts"]
            reason.unpriced += spend.unknown_cost
            reason.by_route[row["route_id"]] = (
                reason.by_route.get(row["route_id"], 0) + row["attempts"]
            )
        if row["route_id"] != row["submitted_route_id"]:
            key = (row["submitted_route_id"], row["route_id"])
            fallbacks.setdefault(key, Spend()).add(spend)
        if row["requests"]:
            estimate = estimates.setdefault(
                row["submitted_route_id"], EstimateVsActual(route_id=row["submitted_route_id"])
            )
            estimate.add(row["requests"], row["compared"], row["estimated"], row["actual"])
    return {
        "total": total,
        "owners": _ranked(list(owners.values())),
        "models": _ranked(list(models.values())),
        "routes": routes,
        "reasons": sorted(reasons.values(), key=lambda r: r.attempts, reverse=True),
        "fallbacks": fallbacks,
        "estimates": estimates,
    }


def spend_by_day(rows: Iterable[dict]) -> dict[date, Spend]:
    """Spend per day from rows grouped by day and SPEND_KEYS."""
    days: dict[date, Spend] = defaultdict(Spend)
    for row in rows:
        days[row["day"]].add(spend_of(row))
    return dict(days)


def user_breakdown(rows: Iterable[dict]) -> list[Row]:
    """Spend by the requesting user, from rows grouped by user_id and SPEND_KEYS."""
    spends: dict[int, Spend] = defaultdict(Spend)
    for row in rows:
        spends[row["user_id"]].add(spend_of(row))
    names = dict(get_user_model().objects.filter(pk__in=list(spends)).values_list("pk", "username"))
    users = []
    for user_id, spend in spends.items():
        if user_id in names:
            users.append(Row(label=names[user_id], drill={"user": names[user_id]}, spend=spend))
        else:
            users.append(Row(label=f"user #{user_id} (deleted)", spend=spend))
    return _ranked(users)


def settings_breakdowns(rows: Iterable[dict]) -> dict[str, list[Row]]:
    """Spend by requested quality and size, from rows grouped by them and SPEND_KEYS."""
    qualities: dict[str, Row] = {}
    sizes: dict[str, Row] = {}
    for row in rows:
        spend = spend_of(row)
        quality, size = row["quality"], f"{row['width']}x{row['height']}"
        qualities.setdefault(quality, Row(label=quality, drill={"quality": quality})).spend.add(
            spend
        )
        sizes.setdefault(size, Row(label=size, drill={"size": size})).spend.add(spend)
    return {"qualities": _ranked(list(qualities.values())), "sizes": _ranked(list(sizes.values()))}


def budget_use(now: datetime | None = None) -> list[BudgetUse]:
    """Each budget against this month's spend, as Budget.spent_this_month counts it
    (real routes only; actual cost, else the estimate), in two queries for all budgets."""
    now = now or timezone.now()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spent_by_user = dict(
        GenerationRequest.objects.filter(created_at__gte=month_start)
        .exclude(route__owner=SANDBOX_OWNER)
        .order_by()
        .values_list("created_by_id")
        .annotate(total=Sum(Coalesce("cost", "estimated_cost")))
    )
    uses = []
    for budget in Budget.objects.select_related("user"):
        if budget.scope == Budget.Scope.GLOBAL:
            spent = sum((v for v in spent_by_user.values() if v is not None), Decimal(0))
            uses.append(BudgetUse("Whole studio", budget.monthly_limit, spent))
        else:
            username = budget.user.get_username()
            spent = spent_by_user.get(budget.user_id) or Decimal(0)
            uses.append(BudgetUse(username, budget.monthly_limit, spent, username=username))
    return sorted(uses, key=lambda use: (use.username != "", -use.share))


def failures_before_any_call(filters: AuditFilter) -> list[dict]:
    """Requests that ended without calling a provider (route disabled, key missing, inputs
    unreadable): they have no attempt, so the ledger alone would never show them."""
    requests = GenerationRequest.objects.filter(
        ~Exists(Attempt.objects.filter(request=OuterRef("pk"))),
        status__in=[Status.FAILED, Status.REFUSED],
    )
    if filters.start:
        requests = requests.filter(created_at__gte=day_start(filters.start))
    if filters.end:
        requests = requests.filter(created_at__lt=day_start(filters.end + timedelta(days=1)))
    if filters.route_id is not None:
        requests = requests.filter(route_id=filters.route_id)
    if filters.user_id is not None:
        requests = requests.filter(created_by_id=filters.user_id)
    return list(
        requests.order_by()
        .values("failure_reason", "route__name")
        .annotate(requests=Count("id"))
        .order_by("-requests")
    )


# --- Charts (geometry here, markup in the templates) ---------------------------------------


@dataclass(frozen=True)
class Segment:
    """One rectangle of a chart: position, size, series (a CSS class) and what it shows."""

    x: float
    y: float
    width: float
    height: float
    series: str
    title: str
    href: str = ""


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class ColumnChart:
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    plot_left: int
    segments: list[Segment]
    ticks: list[Tick]
    labels: list[tuple[float, str]]
    summary: str


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above value: a readable axis maximum."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value * (1 - 1e-9):
            return step * magnitude
    return 10 * magnitude  # pragma: no cover


def day_buckets(
    days: dict[date, Spend], start: date | None, end: date | None
) -> list[tuple[date, date, Spend]]:
    """Every day (or week, for long ranges) of the range, empty ones included."""
    if not days and not (start and end):
        return []
    first = start or min(days)
    last = end or max(days)
    if start is None and days:
        first = min(days)
    if end is None and days:
        last = max(days)
    step = 1 if (last - first).days < DAILY_BARS_UP_TO else 7
    if step == 7:
        first -= timedelta(days=first.weekday())
    buckets = []
    cursor = first
    while cursor <= last:
        bucket_end = min(cursor + timedelta(days=step - 1), last)
        spend = Spend()
        for offset in range((bucket_end - cursor).days + 1):
            if (day := cursor + timedelta(days=offset)) in days:
                spend.add(days[day])
        buckets.append((cursor, bucket_end, spend))
        cursor += timedelta(days=step)
    return buckets


def spend_column_chart(
    buckets: list[tuple[date, date, Spend]],
    series: list[tuple[str, str]],
    link,
    width: int = 1200,
    height: int = 220,
) -> ColumnChart:
    """Stacked columns, one per bucket; series are (Spend attribute, CSS class) bottom-up."""
    left, right, top, bottom = 64, 8, 10, height - 28
    plot_width, plot_height = width - left - right, bottom - top
    totals = [sum((getattr(s, name) or 0) for name, _ in series) for _, _, s in buckets]
    peak = nice_ceiling(float(max(totals, default=0)))
    slot = plot_width / max(len(buckets), 1)
    bar = max(1.0, slot * 0.78)
    segments, labels = [], []
    every = max(1, math.ceil(len(buckets) / 10))
    for index, (first, last, spend) in enumerate(buckets):
        x = left + index * slot + (slot - bar) / 2
        stacked = 0.0
        when = f"{first:%Y-%m-%d}" if first == last else f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"
        for name, css in series:
            value = float(getattr(spend, name) or 0)
            if value <= 0:
                continue
            size = value / peak * plot_height
            segments.append(
                Segment(
                    x=round(x, 2),
                    y=round(bottom - stacked - size, 2),
                    width=round(bar, 2),
                    height=round(max(size, 0.5), 2),
                    series=css,
                    title=f"{when}: {money(value)} {SERIES_NAMES[name]} "
                    f"({spend.attempts} attempts, {spend.unpriced} unpriced)",
                    href=link(first, last),
                )
            )
            stacked += size
        if index % every == 0:
            labels.append((round(x + bar / 2, 2), f"{first:%b %d}"))
    ticks = [
        Tick(y=round(bottom - plot_height * share, 2), label=money(peak * share))
        for share in (0, 0.25, 0.5, 0.75, 1)
    ]
    total = sum(totals, 0)
    highest = money(max(totals, default=0))
    summary = f"{len(buckets)} columns, {money(total)} in all, highest {highest}"
    return ColumnChart(width, height, top, bottom, left, segments, ticks, labels, summary)


SERIES_NAMES = {
    "token_cost": "per-token (price sheet)",
    "per_call_cost": "per-call (provider price)",
    "simulated_cost": "simulated (sandbox)",
}
BAR_WIDTH = 160


def add_spend_bars(rows: list[Row], width: int = BAR_WIDTH) -> None:
    """Horizontal bars for a breakdown table: real spend stacked by contract, one scale."""
    peak = max((float(row.spend.real_cost) for row in rows), default=0.0)
    for row in rows:
        x = 0.0
        for name, css in (("token_cost", "tokens"), ("per_call_cost", "per-call")):
            value = float(getattr(row.spend, name) or 0)
            if value <= 0 or peak <= 0:
                continue
            size = max(value / peak * width, 1.0)
            row.bars.append(Segment(x, 0, round(size, 2), 12, css, f"{money(value)} {name}"))
            x += size


def add_count_bars(items, count, width: int = BAR_WIDTH, series: str = "count") -> None:
    peak = max((count(item) for item in items), default=0)
    for item in items:
        if peak and count(item):
            size = round(max(count(item) / peak * width, 1.0), 2)
            item.bars = [Segment(0, 0, size, 12, series, f"{count(item)}")]


# --- The ledger: list and CSV --------------------------------------------------------------


def _review_status_of_request():
    """The request's human review status from its final outputs: one status, or "mixed"."""
    finals = (
        OutputImage.objects.filter(request=OuterRef("request_id"), kind=OutputImage.Kind.FINAL)
        .order_by()
        .values("request")
        .annotate(low=Min("review_status"), high=Max("review_status"))
        .annotate(status=Case(When(low=F("high"), then=F("low")), default=Value("mixed")))
        .values("status")
    )
    return Subquery(finals)


REVIEW_LABELS = {**dict(ReviewStatus.choices), "mixed": "Mixed (outputs differ)"}


def label_reviews(attempts: Iterable[Attempt]) -> list[Attempt]:
    """Attach the readable review status of each attempt's request (see ledger())."""
    attempts = list(attempts)
    for attempt in attempts:
        attempt.review_label = REVIEW_LABELS.get(attempt.review_status or "", "")
    return attempts


NEWEST_FIRST = ("-started_at", "-id")


@dataclass
class LedgerPage:
    """A page of the attempt list without a COUNT of every match (at a million attempts
    the COUNT alone took 263 ms of the page's 304): one row past the page says whether
    another follows. `paginator.object_list` is the filtered ids, newest first (lazy)."""

    number: int
    object_list: list
    more: bool
    paginator: SimpleNamespace

    def has_next(self) -> bool:
        return self.more

    def has_previous(self) -> bool:
        return self.number > 1

    def has_other_pages(self) -> bool:
        return self.more or self.number > 1

    def next_page_number(self) -> int:
        return self.number + 1

    def previous_page_number(self) -> int:
        return self.number - 1


MAX_PAGE = 1_000_000


def ledger_page(filters: AuditFilter, number, per_page: int) -> LedgerPage:
    """One page of the attempt list, newest first, in a fixed number of queries.

    The page is found on the bare filtered ids (a deep page skips ids, not joined rows),
    then only its rows are loaded with what each shows: route, request, user, price sheet,
    the request's review status and the attempt's stored outputs. `number` is read as
    Django's get_page reads it: anything not a positive whole number is page 1.
    """
    try:
        number = min(max(1, int(number)), MAX_PAGE)
    except (TypeError, ValueError):
        number = 1
    ids = filtered_attempts(filters).order_by(*NEWEST_FIRST).values_list("id", flat=True)
    start = (number - 1) * per_page
    found = list(ids[start : start + per_page + 1])
    finals = OutputImage.objects.filter(kind=OutputImage.Kind.FINAL).order_by("index")
    rows = (
        Attempt.objects.filter(pk__in=found[:per_page])
        .select_related("route", "price_sheet", "request", "request__created_by", "request__route")
        .defer("request__prompt", "request__slot_values")
        .annotate(review_status=_review_status_of_request())
        .prefetch_related(Prefetch("outputs", queryset=finals, to_attr="final_outputs"))
        .order_by(*NEWEST_FIRST)
    )
    return LedgerPage(
        number=number,
        object_list=label_reviews(rows) if found else [],
        more=len(found) > per_page,
        paginator=SimpleNamespace(object_list=ids),
    )


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: str | None) -> str:
    """Text from providers and people: a spreadsheet must not run it as a formula."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _plain(value) -> str:
    return "" if value is None else str(value)


def _time(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _billing(basis: str) -> str:
    """The billing state (studio.billing) a cost basis stands for."""
    state = billing_of(basis)
    return state.value if state else "in_flight"


def _output_url(output_id) -> str:
    """The access-checked file view of an output (its storage path is in output_path)."""
    return reverse("studio:output-file", args=[output_id]) if output_id else ""


SHAPE_KEYS = (
    "prompt_sha256",
    "input_image_count",
    "mask",
    "size",
    "quality",
    "output_format",
    "output_compression",
    "background",
    "n",
    "partial_images",
)
# (CSV column, queryset path, how to write it). The last five are the storage pointer.
CSV_COLUMNS = [
    ("request_id", "request_id", _plain),
    ("attempt", "number", _plain),
    ("started_at", "started_at", _time),
    ("finished_at", "finished_at", _time),
    ("user", "request__created_by__username", spreadsheet_text),
    ("route", "route__name", spreadsheet_text),
    ("route_owner", "route_owner", spreadsheet_text),
    ("routed_because", "routed_because", spreadsheet_text),
    ("model_requested", "model_requested", spreadsheet_text),
    ("model_sent", "model_sent", spreadsheet_text),
    ("request_shape", "request_shape", None),
    ("outcome", "outcome", _plain),
    ("provider_request_id", "provider_request_id", spreadsheet_text),
    ("http_status", "http_status", _plain),
    ("retry_reason", "retry_reason", _plain),
    ("error_code", "error_code", spreadsheet_text),
    ("error_message", "error_message", spreadsheet_text),
    ("latency_ms", "latency_ms", _plain),
    ("input_text_tokens", "input_text_tokens", _plain),
    ("input_image_tokens", "input_image_tokens", _plain),
    ("cached_input_tokens", "cached_input_tokens", _plain),
    ("output_image_tokens", "output_image_tokens", _plain),
    ("output_text_tokens", "output_text_tokens", _plain),
    ("cost_usd", "cost", _plain),
    ("cost_basis", "cost_basis", _plain),
    ("billing", "cost_basis", _billing),
    ("exposure_usd", "exposure", _plain),
    ("billing_note", "billing_note", spreadsheet_text),
    ("usage_shape", "usage_shape", _plain),
    ("mainline_model", "mainline_model", spreadsheet_text),
    ("mainline_input_tokens", "mainline_input_tokens", _plain),
    ("mainline_output_tokens", "mainline_output_tokens", _plain),
    ("mainline_cost_usd", "mainline_cost", _plain),
    ("image_tool_cost_usd", "image_tool_cost", _plain),
    ("price_sheet_from", "price_sheet__effective_from", _time),
    ("request_status", "request__status", _plain),
    ("request_estimated_usd", "request__estimated_cost", _plain),
    ("request_cost_usd", "request__cost", _plain),
    ("review_status", "review_status", _plain),
    ("output_path", "final__file", spreadsheet_text),
    ("output_sha256", "final__sha256", _plain),
    ("output_url", "final__id", _output_url),
    ("delete_after", "final__delete_after", _plain),
    ("deleted_at", "final__deleted_at", _time),
]
POINTER_COLUMNS = 5
CSV_HEADER = [
    name
    for column, _, _ in CSV_COLUMNS
    for name in ([f"shape_{key}" for key in SHAPE_KEYS] if column == "request_shape" else [column])
] + ["simulated"]
_SHAPE_AT = [column for column, _, _ in CSV_COLUMNS].index("request_shape")
_OWNER_AT = [column for column, _, _ in CSV_COLUMNS].index("route_owner")


def csv_rows(filters: AuditFilter, chunk_size: int = 2000, site: str = "") -> Iterator[list[str]]:
    """The filtered ledger, oldest first, one line per attempt, streamed from the database.
    `site` ("https://studio.example.com") makes output URLs absolute.

    An attempt's final outputs come from a LEFT JOIN (one database row per output); rows of
    one attempt arrive together and are folded into one line, so memory stays flat.
    """
    rows = (
        filtered_attempts(filters)
        .annotate(
            final=FilteredRelation("outputs", condition=Q(outputs__kind=OutputImage.Kind.FINAL)),
            review_status=_review_status_of_request(),
        )
        .order_by("started_at", "id", "final__index")
        .values_list("id", *(path for _, path, _ in CSV_COLUMNS))
    )
    writers = [
        (lambda value: site + _output_url(value) if value else "")
        if write is _output_url
        else write
        for _, _, write in CSV_COLUMNS
    ]
    pointer = slice(len(CSV_COLUMNS) - POINTER_COLUMNS, len(CSV_COLUMNS))
    for _, group in groupby(rows.iterator(chunk_size=chunk_size), key=itemgetter(0)):
        first, *more = group
        values = first[1:]
        line = [
            _plain(value) if write is None else write(value)
            for write, value in zip(writers, values, strict=True)
        ]
        if more:  # several final outputs: one pointer each, in index order
            for offset in range(pointer.start, pointer.stop):
                write = writers[offset]
                line[offset] = " ".join(
                    write(row[offset + 1]) for row in (first, *more) if row[offset + 1]
                )
        shape = values[_SHAPE_AT] if isinstance(values[_SHAPE_AT], dict) else {}
        line[_SHAPE_AT : _SHAPE_AT + 1] = [_plain(shape.get(key)) for key in SHAPE_KEYS]
        line.append("yes" if values[_OWNER_AT] == SANDBOX_OWNER else "no")
        yield line


# --- The dashboard, assembled --------------------------------------------------------------


def dashboard(filters: AuditFilter, routes: Iterable[Route]) -> dict:
    """Everything the dashboard shows for a filter, each figure with its drill-down link.

    A fixed set of queries: the grouped attempts, spend by day, spend by request settings,
    latency percentiles, estimate against actual, budgets and failures before any call.
    """
    attempts = filtered_attempts(filters)
    coverage = rollups.Coverage.now()
    list_url, export_url = reverse("audit:attempts"), reverse("audit:export")

    def drill(**changes) -> str:
        return f"{list_url}?{filters.querystring(**changes)}"

    def grouped(*keys: str, measures=rollups.SPEND) -> list[dict]:
        return rollups.grouped(filters, attempts, coverage, keys, measures)

    summary = attempt_breakdowns(grouped(*BREAKDOWN_KEYS, measures=rollups.MEASURES))
    users = user_breakdown(grouped("user_id", *SPEND_KEYS))
    by_settings = settings_breakdowns(grouped("quality", "width", "height", *SPEND_KEYS))
    percentiles = latency_percentiles(grouped("route_id", "band", measures=["attempts"]))
    by_id = {route.pk: route for route in routes}
    names = {pk: route.name for pk, route in by_id.items()}
    route_stats = sorted(summary["routes"].values(), key=lambda stats: -stats.attempts)
    for stats in route_stats:
        stats.name = names.get(stats.route_id, f"route {stats.route_id}")
        stats.p50, stats.p95 = (percentiles.get(stats.route_id, {}).get(p) for p in (0.5, 0.95))
        stats.href = drill(route=stats.name)
        stats.failed_href = drill(route=stats.name, outcome=Outcome.FAILED)
    for reason in summary["reasons"]:
        reason.href = drill(reason=reason.reason)
        reason.by_route = {
            names.get(route_id, str(route_id)): count
            for route_id, count in sorted(reason.by_route.items(), key=lambda item: -item[1])
        }
    estimates = list(summary["estimates"].values())
    for row in estimates:
        if route := by_id.get(row.route_id):
            row.name, row.owner, row.pricing_mode = route.name, route.owner, route.pricing_mode
    fallbacks = []
    for (from_id, to_id), spend in sorted(
        summary["fallbacks"].items(), key=lambda item: -item[1].attempts
    ):
        from_name, to_name = names.get(from_id, "?"), names.get(to_id, "?")
        href = drill(fallback="1", submitted_to=from_name, route=to_name)
        fallbacks.append(Fallback(from_name, to_name, spend, href))
    budgets = budget_use()
    for budget in budgets:
        budget.href = drill(user=budget.username) if budget.username else ""
    add_count_bars(summary["reasons"], lambda reason: reason.attempts, series="failed")
    add_count_bars(route_stats, lambda stats: stats.attempts)
    tables = [
        ("Spend by route owner", "Route owner", summary["owners"]),
        ("Spend by model", "Requested → sent", summary["models"]),
        ("Top spenders", "User", users),
        ("Spend by quality", "Quality", by_settings["qualities"]),
        ("Spend by size", "Size", by_settings["sizes"]),
    ]
    for _, _, rows in tables:
        add_spend_bars(rows)
        for row in rows:
            row.href = drill(**row.drill) if row.drill else ""
    buckets = day_buckets(spend_by_day(grouped("day", *SPEND_KEYS)), filters.start, filters.end)

    def period(first: date, last: date) -> str:
        return drill(start=first, end=last)

    return {
        "total": summary["total"],
        "real_chart": spend_column_chart(
            buckets, [("token_cost", "tokens"), ("per_call_cost", "per-call")], period
        ),
        "simulated_chart": spend_column_chart(
            buckets, [("simulated_cost", "simulated")], period, height=150
        ),
        "has_simulated": summary["total"].simulated_cost is not None,
        "tables": tables,
        "routes": route_stats,
        "reasons": summary["reasons"],
        "fallbacks": fallbacks,
        "fallback_attempts": sum(fallback.spend.attempts for fallback in fallbacks),
        "estimates": sorted(estimates, key=lambda row: (row.simulated, row.name)),
        "budgets": budgets,
        "no_call_failures": failures_before_any_call(filters),
        "rolled_through": coverage.built_through,
        "links": {
            "all": drill(),
            "unpriced": drill(basis=Basis.UNPRICED),
            "possibly_billed": drill(basis=Basis.POSSIBLY_BILLED),
            "failed": drill(outcome=Outcome.FAILED),
            "fallback": drill(fallback="1"),
            "csv": f"{export_url}?{filters.querystring()}",
        },
    }


def presets(filters: AuditFilter, today: date | None = None) -> list[tuple[str, str]]:
    """Quick date ranges, keeping the other filters."""
    today = today or timezone.localdate()
    ranges = [
        ("Last 7 days", today - timedelta(days=6), today),
        ("Last 30 days", today - timedelta(days=DEFAULT_DAYS - 1), today),
        ("This month", today.replace(day=1), today),
        ("All time", None, None),
    ]
    return [(label, filters.querystring(start=first, end=last)) for label, first, last in ranges]
