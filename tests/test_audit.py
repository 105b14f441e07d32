"""The admin audit: dashboard figures, drill-down, filters, permissions, query counts.

The `ledger` fixture is a small known set of attempts on three contracts (OpenAI per
token, a provider per call, the sandbox) with retries, a fallback, unpriced calls and an
old request outside the default 30 days. The factories here are shared by the other
audit test files.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from review import audit, rollups
from review.models import AuditRollupState
from studio.models import (
    Attempt,
    Budget,
    GenerationRequest,
    OutputImage,
    PriceSheet,
    ReviewStatus,
    Route,
    Status,
)

pytestmark = pytest.mark.django_db

Basis, Outcome = Attempt.CostBasis, Attempt.Outcome
ALL_TIME = {"start": "", "end": ""}


def make_request(
    user,
    route,
    *,
    created_at=None,
    size=(1024, 1024),
    quality="low",
    status=Status.SUCCEEDED,
    estimated_cost=None,
    cost=None,
    **extra,
) -> GenerationRequest:
    prompt = extra.pop("prompt", f'Poster "{user.username}" {size} {quality}')
    return GenerationRequest.objects.create(
        created_by=user,
        created_at=created_at or timezone.now() - timedelta(hours=2),
        route=route,
        prompt=prompt,
        prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(),
        width=size[0],
        height=size[1],
        quality=quality,
        output_format="png",
        provider_model="gpt-image-2",
        status=status,
        estimated_cost=estimated_cost,
        cost=cost,
        **extra,
    )


def make_attempt(
    request,
    number,
    *,
    route=None,
    outcome=Outcome.SUCCEEDED,
    cost=None,
    basis=Basis.UNPRICED,
    reason="",
    started_at=None,
    latency_ms=1000,
    **extra,
) -> Attempt:
    route = route or request.route
    started = started_at or request.created_at + timedelta(seconds=10 * number)
    if basis == Basis.TOKENS:
        extra.setdefault("price_sheet", PriceSheet.objects.in_force("gpt-image-2", started))
    return Attempt.objects.create(
        request=request,
        number=number,
        route=route,
        route_owner=route.owner,
        model_requested="gpt-image-2",
        model_sent=route.model_sent_for("gpt-image-2"),
        request_shape=request.request_shape(),
        outcome=outcome,
        retry_reason=reason,
        started_at=started,
        finished_at=started + timedelta(milliseconds=latency_ms or 0),
        latency_ms=latency_ms,
        cost=cost,
        cost_basis=basis,
        provider_request_id=extra.pop("provider_request_id", f"req_{request.pk.hex[:8]}_{number}"),
        http_status=extra.pop("http_status", 200 if outcome == Outcome.SUCCEEDED else 500),
        **extra,
    )


def make_output(attempt, *, index=0, review_status=ReviewStatus.AWAITING, **extra) -> OutputImage:
    digest = hashlib.sha256(f"{attempt.pk}-{index}".encode()).hexdigest()
    return OutputImage.objects.create(
        request=attempt.request,
        attempt=attempt,
        index=index,
        file=extra.pop("file", f"outputs/{attempt.request_id}/{index:02d}-{digest[:16]}.png"),
        sha256=digest,
        bytes=1234,
        width=attempt.request.width,
        height=attempt.request.height,
        format="png",
        public_url=f"/media/outputs/{attempt.request_id}/{index:02d}.png",
        review_status=review_status,
        delete_after=extra.pop("delete_after", timezone.localdate() + timedelta(days=90)),
        **extra,
    )


def create_openai_route(fallback: Route) -> Route:
    return Route.objects.create(
        name="openai",
        owner="openai",
        base_url="https://api.openai.com/v1",
        api_key_env="OPENAI_TEST_KEY",
        model_map={"gpt-image-2": "gpt-image-2"},
        fallback=fallback,
    )


def build_ledger(designer, other_designer, openai_route, provider_route, sandbox_route) -> dict:
    """Eight attempts in the last day, one request two months ago."""
    r1 = make_request(
        designer, openai_route, quality="medium", estimated_cost=Decimal("0.05318"),
        cost=Decimal("0.05318"),
    )  # fmt: skip
    a1 = make_attempt(r1, 1, cost=Decimal("0.05318"), basis=Basis.TOKENS, latency_ms=1000)
    make_output(a1, review_status=ReviewStatus.APPROVED)

    r2 = make_request(
        designer, openai_route, size=(1536, 1024), quality="high",
        estimated_cost=Decimal("0.165"), cost=None,
    )  # fmt: skip
    make_attempt(r2, 1, outcome=Outcome.FAILED, reason="timeout", latency_ms=150_000,
                 http_status=None)  # fmt: skip
    a2 = make_attempt(
        r2, 2, route=provider_route, cost=Decimal("0.03"), basis=Basis.PER_CALL,
        routed_because="fallback from openai after timeout", latency_ms=3000,
    )  # fmt: skip
    make_output(a2)

    r3 = make_request(other_designer, provider_route, estimated_cost=Decimal("0.03"), cost=None)
    make_attempt(r3, 1, outcome=Outcome.FAILED, reason="provider_5xx", latency_ms=2000)
    a3 = make_attempt(r3, 2, cost=Decimal("0.03"), basis=Basis.PER_CALL, latency_ms=4000)
    make_output(a3, review_status=ReviewStatus.REJECTED)

    r4 = make_request(other_designer, sandbox_route, estimated_cost=Decimal("0.006"),
                      cost=Decimal("0.006"))  # fmt: skip
    a4 = make_attempt(r4, 1, cost=Decimal("0.006"), basis=Basis.TOKENS, latency_ms=500)
    make_output(a4)

    r5 = make_request(designer, openai_route, estimated_cost=Decimal("0.00588"),
                      cost=Decimal("0.00588"))  # fmt: skip
    make_attempt(r5, 1, outcome=Outcome.FAILED, reason="rate_limit", cost=Decimal(0),
                 basis=Basis.NOT_BILLED, latency_ms=200, http_status=429)  # fmt: skip
    a5 = make_attempt(r5, 2, cost=Decimal("0.00588"), basis=Basis.TOKENS, latency_ms=1500)
    make_output(a5)

    old = make_request(
        designer, openai_route, created_at=timezone.now() - timedelta(days=60),
        estimated_cost=Decimal("1"), cost=Decimal("1"),
    )  # fmt: skip
    make_attempt(old, 1, cost=Decimal("1"), basis=Basis.TOKENS)
    return {"requests": [r1, r2, r3, r4, r5, old]}


@pytest.fixture
def openai_route(db, price_sheet, provider_route) -> Route:
    return create_openai_route(fallback=provider_route)


@pytest.fixture
def ledger(designer, other_designer, openai_route, provider_route, sandbox_route) -> dict:
    return build_ledger(designer, other_designer, openai_route, provider_route, sandbox_route)


def get_dashboard(client, as_user, **params):
    client.force_login(as_user)
    response = client.get(reverse("audit:dashboard"), params)
    assert response.status_code == 200
    return response


class TestPermissions:
    URLS = ["audit:dashboard", "audit:attempts", "audit:export"]

    @pytest.mark.parametrize("name", URLS)
    def test_anonymous_users_are_sent_to_log_in(self, client, name):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))

    @pytest.mark.parametrize("name", URLS)
    @pytest.mark.parametrize("who", ["designer", "reviewer", "outsider"])
    def test_only_admins_may_look(self, client, request, name, who):
        client.force_login(request.getfixturevalue(who))
        assert client.get(reverse(name)).status_code == 403

    @pytest.mark.parametrize("name", URLS)
    def test_admins_and_superusers_may(self, client, admin_user, django_user_model, name):
        client.force_login(admin_user)
        assert client.get(reverse(name)).status_code == 200
        root = django_user_model.objects.create_superuser("root", password="pw-root")
        client.force_login(root)
        assert client.get(reverse(name)).status_code == 200

    @pytest.mark.parametrize("name", URLS)
    def test_it_only_answers_get(self, client, admin_user, name):
        client.force_login(admin_user)
        assert client.post(reverse(name)).status_code == 405


class TestTotals:
    def test_contracts_are_summed_apart_and_unpriced_is_counted_not_zeroed(
        self, client, admin_user, ledger
    ):
        total = get_dashboard(client, admin_user).context["total"]
        assert total.attempts == 8
        assert total.token_cost == Decimal("0.05906")  # 0.05318 + 0 (not billed) + 0.00588
        assert total.per_call_cost == Decimal("0.06")
        assert total.simulated_cost == Decimal("0.006")
        assert total.real_cost == Decimal("0.11906")  # the sandbox is not in it
        assert total.unpriced == 2
        assert total.failed == 3
        assert total.retries == 3

    def test_the_page_shows_both_figures_and_the_unpriced_count(self, client, admin_user, ledger):
        html = get_dashboard(client, admin_user).content.decode()
        assert "$0.1191" in html  # real spend, by the one money rule
        assert "$0.0591" in html and "$0.0600" in html  # per token and per call, apart
        assert "Simulated" in html and "$0.0060" in html
        unpriced = html.split('data-testid="unpriced"')[1].split("</div>")[0]
        assert ">2</a>" in unpriced

    def test_an_unpriced_only_route_shows_no_dollar_figure(
        self, client, admin_user, designer, provider_route
    ):
        generation = make_request(designer, provider_route, status=Status.FAILED)
        make_attempt(generation, 1, outcome=Outcome.FAILED, reason="timeout")
        response = get_dashboard(client, admin_user)
        total = response.context["total"]
        assert total.unpriced == 1
        assert total.per_call_cost is None and not total.has_real
        real = response.content.decode().split('data-testid="real-spend"')[1].split("</div>")[0]
        assert "no priced spend" in real and "$0" not in real

    def test_the_default_is_the_last_30_days_and_all_time_is_one_click_away(
        self, client, admin_user, ledger
    ):
        assert get_dashboard(client, admin_user).context["total"].attempts == 8
        everything = get_dashboard(client, admin_user, **ALL_TIME).context["total"]
        assert everything.attempts == 9
        assert everything.token_cost == Decimal("1.05906")


class TestBreakdowns:
    def rows(self, response, title) -> dict[str, audit.Row]:
        tables = {name: rows for name, _, rows in response.context["tables"]}
        return {row.label: row for row in tables[title]}

    def test_spend_by_owner_model_user_quality_and_size(self, client, admin_user, ledger):
        response = get_dashboard(client, admin_user)
        owners = self.rows(response, "Spend by route owner")
        assert owners["openai"].spend.token_cost == Decimal("0.05906")
        assert owners["openai"].spend.unpriced == 1
        assert owners["laozhang.ai"].spend.per_call_cost == Decimal("0.06")
        assert owners["laozhang.ai"].spend.token_cost is None
        assert owners["sandbox"].spend.simulated_cost == Decimal("0.006")
        assert owners["sandbox"].spend.real_cost == 0
        models = self.rows(response, "Spend by model")
        assert list(models) == ["gpt-image-2"] and models["gpt-image-2"].spend.attempts == 8
        users = self.rows(response, "Top spenders")
        assert list(users) == ["dana", "otto"]  # most real spend first
        assert users["dana"].spend.real_cost == Decimal("0.08906")
        assert users["otto"].spend.per_call_cost == Decimal("0.03")
        assert users["otto"].spend.simulated_cost == Decimal("0.006")
        qualities = self.rows(response, "Spend by quality")
        assert qualities["medium"].spend.token_cost == Decimal("0.05318")
        assert qualities["high"].spend.per_call_cost == Decimal("0.03")
        sizes = self.rows(response, "Spend by size")
        assert sizes["1536x1024"].spend.attempts == 2
        assert sizes["1024x1024"].spend.attempts == 6

    def test_routes_show_failure_rate_and_latency_percentiles(self, client, admin_user, ledger):
        routes = {r.name: r for r in get_dashboard(client, admin_user).context["routes"]}
        openai = routes["openai"]
        assert (openai.attempts, openai.succeeded, openai.failed) == (4, 2, 2)
        assert openai.failure_percent == 50
        # Latencies 200, 1000, 1500, 150000 ms: interpolated between ranks like
        # percentile_cont, each latency read as the middle of its 2% band.
        assert openai.p50 == pytest.approx(1250, rel=0.01)
        assert openai.p95 == pytest.approx(1500 + 0.85 * (150_000 - 1500), rel=0.01)
        assert routes["gateway"].failure_percent == pytest.approx(100 / 3)
        assert routes["sandbox"].p50 == pytest.approx(500, rel=0.01)
        assert routes["sandbox"].failure_percent == 0

    def test_retries_by_reason_and_fallbacks_leave_a_trace(self, client, admin_user, ledger):
        response = get_dashboard(client, admin_user)
        reasons = {r.reason: r for r in response.context["reasons"]}
        assert set(reasons) == {"timeout", "provider_5xx", "rate_limit"}
        assert reasons["timeout"].unpriced == 1 and reasons["timeout"].by_route == {"openai": 1}
        assert reasons["rate_limit"].unpriced == 0
        (fallback,) = response.context["fallbacks"]
        assert (fallback.from_route, fallback.to_route) == ("openai", "gateway")
        assert fallback.spend.per_call_cost == Decimal("0.03")
        assert response.context["fallback_attempts"] == 1

    def test_estimate_against_actual_per_contract(self, client, admin_user, ledger):
        rows = {row.name: row for row in get_dashboard(client, admin_user).context["estimates"]}
        openai = rows["openai"]
        assert (openai.owner, openai.pricing_mode) == ("openai", "tokens")
        # r2's actual is unpriced (its timeout), so it is counted apart, not compared.
        assert (openai.requests, openai.compared, openai.not_compared) == (3, 2, 1)
        assert openai.estimated == Decimal("0.05906") and openai.actual == Decimal("0.05906")
        assert rows["gateway"].pricing_mode == "per_call" and rows["gateway"].not_compared == 1
        sandbox = rows["sandbox"]
        assert sandbox.simulated and sandbox.actual == Decimal("0.006")
        assert sandbox.difference == 0

    def test_budget_use_matches_what_the_composer_enforces(
        self, client, admin_user, designer, other_designer, ledger
    ):
        Budget.objects.create(user=designer, monthly_limit=Decimal("0.05"))
        Budget.objects.create(user=other_designer, monthly_limit=Decimal("10"))
        Budget.objects.create(scope=Budget.Scope.GLOBAL, monthly_limit=Decimal("100"))
        uses = {use.label: use for use in get_dashboard(client, admin_user).context["budgets"]}
        for budget in Budget.objects.all():
            label = budget.user.username if budget.user_id else "Whole studio"
            assert uses[label].spent == budget.spent_this_month()
            assert uses[label].limit == budget.monthly_limit
        assert uses["dana"].over and not uses["otto"].over

    def test_requests_that_failed_before_any_call_are_shown(
        self, client, admin_user, designer, openai_route
    ):
        make_request(
            designer, openai_route, status=Status.FAILED, failure_reason="route_unavailable"
        )
        rows = get_dashboard(client, admin_user).context["no_call_failures"]
        assert rows == [
            {"failure_reason": "route_unavailable", "route__name": "openai", "requests": 1}
        ]


class TestFiltersAndDrillDown:
    def listed(self, client, url) -> list[Attempt]:
        """Every attempt the list shows for a URL, over all its pages."""
        response = client.get(url)
        assert response.status_code == 200
        ids = list(response.context["page"].paginator.object_list)
        return list(Attempt.objects.filter(pk__in=ids))

    def test_every_table_row_drills_down_to_exactly_its_attempts(self, client, admin_user, ledger):
        response = get_dashboard(client, admin_user)
        checked = 0
        for _, _, rows in response.context["tables"]:
            for row in rows:
                attempts = self.listed(client, row.href)
                assert len(attempts) == row.spend.attempts, row.label
                checked += 1
        for stats in response.context["routes"]:
            assert len(self.listed(client, stats.href)) == stats.attempts
            assert len(self.listed(client, stats.failed_href)) == stats.failed
        for reason in response.context["reasons"]:
            assert len(self.listed(client, reason.href)) == reason.attempts
        for fallback in response.context["fallbacks"]:
            assert len(self.listed(client, fallback.href)) == fallback.spend.attempts
        assert checked >= 10

    def test_the_unpriced_link_lists_the_unpriced_attempts(self, client, admin_user, ledger):
        links = get_dashboard(client, admin_user).context["links"]
        attempts = self.listed(client, links["unpriced"])
        assert {a.retry_reason for a in attempts} == {"timeout", "provider_5xx"}
        assert all(a.cost is None for a in attempts)
        (fallback,) = self.listed(client, links["fallback"])
        assert fallback.routed_because == "fallback from openai after timeout"

    def test_chart_columns_link_to_their_days(self, client, admin_user, ledger):
        response = get_dashboard(client, admin_user, **ALL_TIME)
        chart = response.context["real_chart"]
        hrefs = {segment.href for segment in chart.segments}
        assert len(hrefs) == 2  # today (or yesterday) and the day two months ago
        # A column's link lists its day's attempts, whatever their route.
        assert sum(len(self.listed(client, href)) for href in hrefs) == 9
        (simulated,) = response.context["simulated_chart"].segments
        assert "$0.0060 simulated" in simulated.title

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"route": "gateway"}, 3),
            ({"submitted_to": "openai"}, 5),
            ({"user": "otto"}, 3),
            ({"user": "nobody"}, 0),
            ({"status": "succeeded"}, 8),
            ({"outcome": "failed"}, 3),
            ({"reason": "timeout"}, 1),
            ({"basis": "per_call"}, 2),
            ({"owner": "sandbox"}, 1),
            ({"quality": "high"}, 2),
            ({"size": "1536x1024"}, 2),
            ({"fallback": "1"}, 1),
            ({"model": "gpt-image-2"}, 8),
        ],
    )
    def test_filters_narrow_dashboard_list_and_export_alike(
        self, client, admin_user, ledger, params, expected
    ):
        assert get_dashboard(client, admin_user, **params).context["total"].attempts == expected
        assert len(self.listed(client, f"{reverse('audit:attempts')}?{_qs(params)}")) == expected
        export = client.get(reverse("audit:export"), params)
        assert b"".join(export.streaming_content).decode().count("\n") == expected + 1

    def test_a_date_range_keeps_only_its_days(self, client, admin_user, ledger):
        old_day = timezone.localdate() - timedelta(days=60)
        params = {"start": old_day.isoformat(), "end": old_day.isoformat()}
        assert get_dashboard(client, admin_user, **params).context["total"].attempts == 1

    def test_bad_filters_are_reported_and_ignored(self, client, admin_user, ledger):
        response = get_dashboard(client, admin_user, size="huge", route="nope", **ALL_TIME)
        assert response.context["form"].errors.keys() == {"size", "route"}
        assert response.context["total"].attempts == 9
        assert "Some filters were not understood" in response.content.decode()


def _qs(params: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


class TestAttemptList:
    def test_each_row_carries_the_log_fields(self, client, admin_user, ledger):
        client.force_login(admin_user)
        response = client.get(reverse("audit:attempts"), {"reason": "timeout"})
        html = response.content.decode()
        (attempt,) = response.context["page"].object_list
        generation = attempt.request
        assert reverse("studio:request-detail", args=[generation.id]) in html
        assert attempt.provider_request_id in html
        assert "1536x1024" in html and "high" in html and "0 input images" in html
        assert generation.prompt_sha256[:10] in html
        assert "timeout" in html and "150000 ms" in html
        assert "unpriced" in html and "$0.0000" not in html
        assert "fallback-tag" not in html  # the first attempt was on the request's own route
        assert "Awaiting review" in html  # the request's review status, from its output

    def test_the_fallback_attempt_shows_where_and_why(self, client, admin_user, ledger):
        client.force_login(admin_user)
        html = client.get(reverse("audit:attempts"), {"fallback": "1"}).content.decode()
        assert 'title="The request was submitted to openai">fallback<' in html
        assert "fallback from openai after timeout" in html
        assert "per call, laozhang.ai's price" in html

    def test_storage_pointer_and_retention_are_shown(self, client, admin_user, ledger):
        output = OutputImage.objects.get(review_status=ReviewStatus.REJECTED)
        output.deleted_at = timezone.now()
        output.save(update_fields=["deleted_at"])
        client.force_login(admin_user)
        html = client.get(reverse("audit:attempts"), {"route": "gateway"}).content.decode()
        assert output.file.name[:30] in html and output.sha256[:10] in html
        assert "deleted " in html and "delete after " in html
        assert reverse("studio:output-file", args=[output.id]) in html
        assert "Rejected" in html

    def test_sandbox_attempts_are_labelled_simulated(self, client, admin_user, ledger):
        client.force_login(admin_user)
        html = client.get(reverse("audit:attempts"), {"owner": "sandbox"}).content.decode()
        assert "simulated" in html and "$0.0060" in html

    def test_it_is_paginated_newest_first(self, client, admin_user, designer, sandbox_route):
        for number in range(55):
            generation = make_request(
                designer, sandbox_route, created_at=timezone.now() - timedelta(minutes=number)
            )
            make_attempt(generation, 1, cost=Decimal("0.006"), basis=Basis.TOKENS)
        client.force_login(admin_user)
        first = client.get(reverse("audit:attempts")).context["page"]
        second = client.get(reverse("audit:attempts"), {"page": 2}).context["page"]
        assert len(first.object_list) == 50 and len(second.object_list) == 5
        started = [a.started_at for a in first.object_list]
        assert started == sorted(started, reverse=True)
        assert started[-1] > second.object_list[0].started_at


class TestQueryCounts:
    def grow(self, designer, other_designer, routes, count: int) -> None:
        for number in range(count):
            route = routes[number % len(routes)]
            user = designer if number % 2 else other_designer
            generation = make_request(
                user, route, quality=["low", "medium", "high"][number % 3],
                size=[(1024, 1024), (1536, 1024), (1024, 1536)][number % 3],
            )  # fmt: skip
            make_attempt(generation, 1, outcome=Outcome.FAILED, reason="rate_limit")
            attempt = make_attempt(generation, 2, cost=Decimal("0.01"), basis=Basis.TOKENS)
            make_output(attempt)

    @pytest.mark.parametrize(("name", "most"), [("audit:dashboard", 22), ("audit:attempts", 10)])
    @pytest.mark.parametrize("rolled_up", [False, True], ids=["ledger", "rollups"])
    def test_queries_do_not_grow_with_rows(
        self, client, admin_user, designer, other_designer, ledger, name, most, rolled_up,
        openai_route, provider_route, sandbox_route,
    ):  # fmt: skip
        def refresh() -> None:
            if rolled_up:  # every day so far settled, the range split at yesterday
                rollups.refresh(now=timezone.now() + timedelta(days=1), rebuild=True)
                AuditRollupState.objects.update(
                    built_through=timezone.localdate() - timedelta(days=1)
                )

        routes = [openai_route, provider_route, sandbox_route]
        Budget.objects.create(user=designer, monthly_limit=Decimal(5))
        client.force_login(admin_user)
        refresh()
        with CaptureQueriesContext(connection) as small:
            assert client.get(reverse(name), {"user": "dana"}).status_code == 200
        self.grow(designer, other_designer, routes, 30)
        Budget.objects.create(user=other_designer, monthly_limit=Decimal(5))
        refresh()
        with CaptureQueriesContext(connection) as large:
            assert client.get(reverse(name), {"user": "dana"}).status_code == 200
        assert len(large) == len(small)
        assert len(small) <= most


class TestHelpers:
    @pytest.mark.parametrize("count", [1, 2, 7, 201])
    def test_latency_percentiles_from_bands_are_within_one_percent_of_exact(
        self, designer, sandbox_route, count
    ):
        import random
        import statistics

        rng = random.Random(count)
        latencies = [rng.randint(50, 120_000) for _ in range(count)]
        generation = make_request(designer, sandbox_route)
        Attempt.objects.bulk_create(
            Attempt(
                request=generation,
                number=number,
                route=sandbox_route,
                route_owner="sandbox",
                model_requested="gpt-image-2",
                model_sent="gpt-image-2",
                latency_ms=latency,
            )
            for number, latency in enumerate(latencies, start=1)
        )
        bands = rollups.live_grouped(Attempt.objects.all(), ["route_id", "band"], ["attempts"])
        result = audit.latency_percentiles(bands)[sandbox_route.pk]
        if count == 1:
            assert result[0.5] == result[0.95] == pytest.approx(latencies[0], rel=0.01)
            return
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        assert result[0.5] == pytest.approx(cuts[49], rel=0.01)
        assert result[0.95] == pytest.approx(cuts[94], rel=0.01)

    def test_long_ranges_are_charted_by_week_and_lose_nothing(self):
        from datetime import date

        days = {
            date(2026, 1, 1): audit.Spend(attempts=1, token_cost=Decimal("1")),
            date(2026, 3, 31): audit.Spend(attempts=2, per_call_cost=Decimal("0.5"), unpriced=1),
        }
        buckets = audit.day_buckets(days, date(2026, 1, 1), date(2026, 6, 30))
        assert buckets[0][0] == date(2025, 12, 29)  # the Monday of the first week
        assert all((last - first).days <= 6 for first, last, _ in buckets)
        assert sum(spend.attempts for *_, spend in buckets) == 3
        assert sum(spend.unpriced for *_, spend in buckets) == 1
        daily = audit.day_buckets(days, date(2026, 1, 1), date(2026, 1, 31))
        assert len(daily) == 31 and daily[0][2].token_cost == Decimal("1")

    @pytest.mark.parametrize(
        ("value", "ceiling"), [(0, 1), (0.07, 0.1), (1.2, 2), (2.1, 2.5), (2600, 5000)]
    )
    def test_chart_axes_end_on_a_readable_number(self, value, ceiling):
        assert audit.nice_ceiling(value) == pytest.approx(ceiling)


def test_the_attempt_list_counts_nothing_it_does_not_show(
    client, admin_user, designer, sandbox_route
):
    """Issue 16: at a million attempts the list's COUNT took 263 ms of its 304. The page
    reads one row past itself to know whether another follows; a page past the end says
    so and links back to the newest."""
    for _ in range(3):
        generation = make_request(designer, sandbox_route)
        make_attempt(generation, 1, cost=Decimal("0.006"), basis=Basis.TOKENS)
    client.force_login(admin_user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("audit:attempts"))
    assert response.status_code == 200 and len(response.context["page"].object_list) == 3
    assert not any("COUNT(" in query["sql"].upper() for query in queries.captured_queries)
    assert not response.context["page"].has_next()
    beyond = client.get(reverse("audit:attempts"), {"page": 99}).content.decode()
    assert "No attempts this far back" in beyond
