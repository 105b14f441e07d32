"""Daily rollups: the dashboard reads them for settled days and shows the same figures as
the ledger itself, whatever the filter and wherever the rollups end."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from review import audit, rollups
from review.models import AuditRollup, AuditRollupState
from review.tasks import refresh_audit_rollups
from studio.models import Attempt, Route, Status
from tests.test_audit import Basis, Outcome, build_ledger, create_openai_route, make_attempt
from tests.test_audit import make_request as make_generation

pytestmark = pytest.mark.django_db


@pytest.fixture
def routes(db, price_sheet, provider_route, sandbox_route) -> dict[str, Route]:
    openai = create_openai_route(fallback=provider_route)
    return {"openai": openai, "gateway": provider_route, "sandbox": sandbox_route}


@pytest.fixture
def spread(designer, other_designer, routes) -> None:
    """The audit tests' ledger plus 24 requests spread over the last 12 days: retries,
    fallbacks, unpriced and not-billed calls, three sizes, three qualities, two users."""
    build_ledger(designer, other_designer, routes["openai"], routes["gateway"], routes["sandbox"])
    now = timezone.now()
    names = ["openai", "gateway", "sandbox"]
    for number in range(24):
        route = routes[names[number % 3]]
        when = now - timedelta(days=number // 2, hours=number % 5)
        failed = number % 7 == 0
        generation = make_generation(
            designer if number % 2 else other_designer, route, created_at=when,
            size=[(1024, 1024), (1536, 1024), (1024, 1536)][number % 3],
            quality=["low", "medium", "high"][number % 3],
            status=Status.FAILED if failed else Status.SUCCEEDED,
            estimated_cost=Decimal("0.01") * (number % 4 + 1),
            cost=None if failed else Decimal("0.012") * (number % 4 + 1),
        )  # fmt: skip
        make_attempt(
            generation, 1, outcome=Outcome.FAILED, reason=["rate_limit", "timeout"][number % 2],
            cost=Decimal(0) if number % 2 == 0 else None,
            basis=Basis.NOT_BILLED if number % 2 == 0 else Basis.UNPRICED,
            started_at=when, latency_ms=300 + 97 * number,
        )  # fmt: skip
        if failed:
            continue
        second_route = routes["gateway"] if route.name == "openai" and number % 4 == 0 else route
        make_attempt(
            generation, 2, route=second_route,
            cost=Decimal("0.012") * (number % 4 + 1),
            basis=Basis.PER_CALL if second_route.name == "gateway" else Basis.TOKENS,
            routed_because="fallback" if second_route != route else "",
            started_at=when + timedelta(seconds=30), latency_ms=900 + 1013 * number,
        )  # fmt: skip


def figures(filters) -> dict:
    """What the dashboard shows for a filter, in a form two runs can be compared in."""
    context = audit.dashboard(filters, list(Route.objects.all()))
    shown = {
        "total": context["total"],
        "real_chart": context["real_chart"],
        "simulated_chart": context["simulated_chart"],
        "routes": {
            r.name: (
                r.attempts,
                r.succeeded,
                r.failed,
                r.unknown,
                r.in_flight,
                r.p50,
                r.p95,
                r.spend,
            )
            for r in context["routes"]
        },
        "reasons": {r.reason: (r.attempts, r.unpriced, r.by_route) for r in context["reasons"]},
        "fallbacks": {(f.from_route, f.to_route): f.spend for f in context["fallbacks"]},
        "estimates": {
            e.name: (e.requests, e.compared, e.estimated, e.actual) for e in context["estimates"]
        },
    }
    for title, _, rows in context["tables"]:
        shown[title] = {row.label: row.spend for row in rows}
    return shown


def _qs(params: dict) -> str:
    return "&".join(f"{name}={value}" for name, value in params.items())


def read(params: dict):
    query = QueryDict(mutable=True)
    query.update(params)
    return audit.read_filters(query)[0]


def build_through(days_ago: int) -> None:
    """Rollups for every settled day up to `days_ago` days before today."""
    day = timezone.localdate() - timedelta(days=days_ago)
    rollups.refresh(now=rollups.day_start(day + timedelta(days=1)) + timedelta(hours=1))
    assert AuditRollupState.objects.get().built_through == day


FILTERS = [
    {},
    {"start": "", "end": ""},
    {"route": "openai", "start": "", "end": ""},
    {"submitted_to": "openai", "fallback": "1", "start": "", "end": ""},
    {"user": "dana", "start": "", "end": ""},
    {"status": "failed", "start": "", "end": ""},
    {"outcome": "failed", "reason": "timeout", "start": "", "end": ""},
    {"basis": "unpriced", "start": "", "end": ""},
    {"owner": "sandbox", "start": "", "end": ""},
    {"model": "gpt-image-2"},
    {"quality": "high", "start": "", "end": ""},
    {"size": "1536x1024", "route": "gateway", "start": "", "end": ""},
    {"user": "otto", "quality": "medium", "start": "", "end": ""},  # no kind holds both
    {"start": "2020-01-01", "end": "2020-01-31"},
]


class TestSameFiguresEitherWay:
    @pytest.mark.parametrize("days_ago", [9, 3, 0])
    @pytest.mark.parametrize("params", FILTERS, ids=lambda p: _qs(p) or "default")
    def test_dashboard_figures_do_not_depend_on_where_rollups_end(self, spread, params, days_ago):
        live = figures(read(params))
        build_through(days_ago)
        assert AuditRollup.objects.exists()
        assert figures(read(params)) == live

    def test_dates_inside_the_rollups_only(self, spread):
        today = timezone.localdate()
        params = {"start": (today - timedelta(days=8)).isoformat(),
                  "end": (today - timedelta(days=4)).isoformat()}  # fmt: skip
        live = figures(read(params))
        assert live["total"].attempts > 0
        build_through(1)
        assert figures(read(params)) == live

    def test_settled_days_really_come_from_the_rollups(self, spread, client, admin_user):
        """Change a settled attempt behind the rollups' back: the dashboard keeps the
        rolled-up figure until the rollups are rebuilt."""
        build_through(0)
        everything = read({"start": "", "end": ""})
        before = figures(everything)["total"]
        Attempt.objects.filter(cost_basis=Basis.PER_CALL).update(cost=Decimal("1.5"))
        assert figures(everything)["total"] == before
        rollups.refresh(now=timezone.now() + timedelta(days=1), rebuild=True)
        assert figures(everything)["total"].per_call_cost > before.per_call_cost
        client.force_login(admin_user)
        html = client.get(reverse("audit:dashboard")).content.decode()
        assert "are read from daily rollups" in html


class TestSettling:
    def test_nothing_settles_today(self, spread):
        summary = rollups.refresh()
        yesterday = timezone.localdate() - timedelta(days=1)
        assert summary["through"] == yesterday.isoformat()
        assert not AuditRollup.objects.filter(day__gt=yesterday).exists()

    def test_an_open_request_holds_back_its_day_and_the_days_after(self, spread, designer, routes):
        today = timezone.localdate()
        open_request = make_generation(
            designer, routes["openai"], status=Status.RUNNING,
            created_at=rollups.day_start(today - timedelta(days=5)) + timedelta(hours=3),
        )  # fmt: skip
        rollups.refresh()
        assert AuditRollupState.objects.get().built_through == today - timedelta(days=6)
        open_request.status = Status.SUCCEEDED
        open_request.save(update_fields=["status"])
        rollups.refresh()
        assert AuditRollupState.objects.get().built_through == today - timedelta(days=1)

    def test_a_call_still_in_flight_holds_back_its_requests_day(self, spread, designer, routes):
        today = timezone.localdate()
        created = rollups.day_start(today - timedelta(days=3)) + timedelta(hours=2)
        cancelled = make_generation(
            designer, routes["gateway"], status=Status.CANCELLED, created_at=created
        )
        make_attempt(cancelled, 1, outcome=Outcome.CALLING, started_at=created, latency_ms=None)
        rollups.refresh()
        assert AuditRollupState.objects.get().built_through == today - timedelta(days=4)

    def test_a_request_that_just_ended_holds_back_its_day_for_a_while(
        self, spread, designer, routes
    ):
        """A worker that claimed it may still record its call and cost until its task's
        hard time limit: the day settles only after that."""
        today = timezone.localdate()
        created = rollups.day_start(today - timedelta(days=2)) + timedelta(hours=5)
        now = timezone.now()
        make_generation(designer, routes["openai"], status=Status.CANCELLED, created_at=created,
                        finished_at=now - timedelta(minutes=5))  # fmt: skip
        rollups.refresh(now=now)
        assert AuditRollupState.objects.get().built_through == today - timedelta(days=3)
        later = now + rollups.quiet_period()
        rollups.refresh(now=later)
        built = AuditRollupState.objects.get().built_through
        if timezone.localdate(later) == today:
            assert built == today - timedelta(days=1)
        else:  # the quiet period ran past midnight: today has ended too, and may settle
            assert built in (today - timedelta(days=1), today)

    def test_days_are_built_a_week_per_transaction(self, spread, monkeypatch):
        """A long first build keeps each finished week even if a later one fails."""
        built = []
        real_build = rollups.build

        def build_or_fail(first, last):
            if built:
                raise RuntimeError("database went away")
            built.append((first, last))
            return real_build(first, last)

        monkeypatch.setattr(rollups, "build", build_or_fail)
        with pytest.raises(RuntimeError):
            rollups.refresh()
        [(first, last)] = built
        assert (last - first).days + 1 == rollups.CHUNK_DAYS
        assert AuditRollupState.objects.get().built_through == last
        assert not AuditRollup.objects.filter(day__gt=last).exists()
        monkeypatch.setattr(rollups, "build", real_build)
        live = figures(read({"start": "", "end": ""}))
        rollups.refresh()
        yesterday = timezone.localdate() - timedelta(days=1)
        assert AuditRollupState.objects.get().built_through == yesterday
        assert figures(read({"start": "", "end": ""})) == live

    def test_running_again_adds_nothing_twice(self, spread):
        first = rollups.refresh(now=timezone.now() + timedelta(days=1))
        count = AuditRollup.objects.count()
        again = refresh_audit_rollups()
        assert first["rows"] == count > 0
        assert again["days"] == again["rows"] == 0
        assert AuditRollup.objects.count() == count

    def test_a_settled_day_that_changes_is_read_live_again(self, spread, designer, routes):
        build_through(0)
        today = timezone.localdate()
        # Imported by hand: a running request three days back.
        make_generation(designer, routes["openai"], status=Status.QUEUED,
                        created_at=timezone.now() - timedelta(days=3))  # fmt: skip
        rollups.refresh(now=timezone.now() + timedelta(days=1))
        through = AuditRollupState.objects.get().built_through
        assert through < today - timedelta(days=2)
        assert not AuditRollup.objects.filter(day__gt=through).exists()

    def test_another_time_zone_starts_over(self, spread, settings):
        build_through(0)
        with timezone.override("Pacific/Kiritimati"):  # UTC+14: most days move
            assert rollups.Coverage.now().built_through is None  # not trusted meanwhile
            live = figures(read({"start": "", "end": ""}))
            rollups.refresh(now=timezone.now() + timedelta(days=1))
            state = AuditRollupState.objects.get()
            assert state.time_zone == "Pacific/Kiritimati"
            assert figures(read({"start": "", "end": ""})) == live

    def test_the_command_and_the_beat_schedule(self, spread, settings):
        from io import StringIO

        out = StringIO()
        call_command("audit_rollups", stdout=out)
        assert "read from rollups through" in out.getvalue()
        call_command("audit_rollups", "--rebuild", stdout=out)
        assert AuditRollup.objects.exists()
        tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
        assert "review.tasks.refresh_audit_rollups" in tasks


class TestLedgerIsKept:
    def test_requests_and_conversations_cannot_be_deleted_in_the_admin(
        self, client, spread, django_user_model
    ):
        from studio.models import GenerationRequest

        root = django_user_model.objects.create_superuser("root", password="pw-root-123")
        client.force_login(root)
        generation = GenerationRequest.objects.first()
        url = reverse("admin:studio_generationrequest_delete", args=[generation.pk])
        assert client.post(url, {"post": "yes"}).status_code == 403
        assert GenerationRequest.objects.filter(pk=generation.pk).exists()
        for model in ("generationrequest", "conversation"):
            changelist = client.get(reverse(f"admin:studio_{model}_changelist"))
            assert changelist.status_code == 200
            assert "delete_selected" not in changelist.content.decode()


class TestLatencyLabels:
    @pytest.mark.parametrize(
        ("milliseconds", "label"),
        [(None, "—"), (840.4, "840 ms"), (1000, "1 s"), (12_345, "12.3 s"), (151_200, "151 s")],
    )
    def test_three_significant_figures(self, milliseconds, label):
        assert audit.latency_label(milliseconds) == label
