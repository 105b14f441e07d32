"""`make bench` case: the audit dashboard, attempt list, review queue and CSV export at scale.

Builds 100,000 requests (BENCH_AUDIT_REQUESTS) with 300,000 attempts (and their outputs)
in a scratch PostgreSQL database of its own, `studio_bench_audit`, dropped and created on
every run, then times the audit pages server-side through Django's test client with a
logged-in admin:
medians of several runs, the number of SQL queries each page makes, and the CSV export's
time and peak Python memory (tracemalloc) while streaming about 100,000 rows.

The daily rollups are built first, as celery beat would have (their build time is
printed, for 90 days at once and for one more day); the all-time dashboard is also timed
with them switched off, reading only the ledger, for comparison.

    python -m tests.bench.audit

BENCH_POSTGRES_URL names the server (default postgres://postgres@127.0.0.1:5432); the
bench exits non-zero with a message when PostgreSQL cannot be reached.
"""

from __future__ import annotations

import io
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
DATABASE_NAME = "studio_bench_audit"
REQUESTS = int(os.environ.get("BENCH_AUDIT_REQUESTS", "100000"))
ATTEMPTS_PER_REQUEST = (1, 2, 3, 4, 5)  # cycled: 300,000 attempts for 100,000 requests
DAYS = 90
USERS = 60
BATCH = 5_000
REPEATS = 7
BUDGET_MS = 300


def recreate_database() -> None:
    """Drop and create the bench's own database; exit with a clear message if we cannot."""
    import psycopg

    try:
        with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True, connect_timeout=5) as db:
            db.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
            db.execute(f"CREATE DATABASE {DATABASE_NAME}")
    except psycopg.OperationalError as error:
        sys.exit(f"PostgreSQL is not reachable at {SERVER_URL}; the audit bench needs it.\n{error}")


def setup_django() -> None:
    os.environ["DATABASE_URL"] = f"{SERVER_URL}/{DATABASE_NAME}"
    os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="studio-bench-audit-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["ALLOWED_HOSTS"] = "testserver"  # the test client's host
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def build_dataset() -> dict:
    """100k requests over the last 90 days on three routes, 1-5 attempts each (300k)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.utils import timezone

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
    from studio.pricing import Usage, cost_of_usage, estimate_output_tokens

    call_command("migrate", verbosity=0)
    call_command("seed_studio", verbosity=0, stdout=io.StringIO())
    User = get_user_model()
    admin = User.objects.create_user("bench-admin", password="bench", is_staff=True)
    admin.groups.add(Group.objects.get(name="admin"))
    designers = User.objects.bulk_create(
        [User(username=f"designer{number:03d}") for number in range(USERS)]
    )
    Budget.objects.bulk_create(
        [Budget(user=user, monthly_limit=Decimal(200)) for user in designers[:20]]
        + [Budget(scope=Budget.Scope.GLOBAL, monthly_limit=Decimal(5000))]
    )
    routes = {route.name: route for route in Route.objects.all()}
    Route.objects.update(enabled=True)
    routes["openai"].fallback = routes["laozhang"]
    routes["openai"].save(update_fields=["fallback"])
    sheet = PriceSheet.objects.get()

    rng = random.Random(2026)
    now = timezone.now()
    sizes = [(1024, 1024), (1536, 1024), (1024, 1536), (2048, 2048), (3840, 2160)]
    qualities = ["low", "medium", "high", "auto"]
    failures = [
        ("timeout", None),
        ("rate_limit", 429),
        ("provider_5xx", 500),
        ("connection", None),
        ("invalid_output", 200),
    ]
    route_names = ["openai"] * 5 + ["laozhang"] * 3 + ["sandbox"] * 2
    counts = {"requests": 0, "attempts": 0, "outputs": 0}
    started = time.perf_counter()
    for batch_start in range(0, REQUESTS, BATCH):
        requests, attempts, outputs = [], [], []
        for number in range(batch_start, batch_start + BATCH):
            route = routes[rng.choice(route_names)]
            width, height = rng.choice(sizes)
            quality = rng.choice(qualities)
            tokens = estimate_output_tokens(width, height, quality)
            per_call = route.pricing_mode == Route.PricingMode.PER_CALL
            estimate = (
                route.price_per_call
                if per_call
                else cost_of_usage(Usage(input_text_tokens=40, output_image_tokens=tokens), sheet)
            )
            created = now - timedelta(seconds=rng.uniform(60, DAYS * 86400))
            status = rng.choices(
                [Status.SUCCEEDED, Status.FAILED, Status.REFUSED, Status.CANCELLED],
                [88, 8, 2, 2],
            )[0]
            request = GenerationRequest(
                created_by=designers[number % USERS],
                created_at=created,
                prompt=f"Bench poster {number}",
                prompt_sha256=f"{number:064x}",
                width=width,
                height=height,
                quality=quality,
                output_format="png",
                route=route,
                provider_model="gpt-image-2",
                estimated_output_tokens=tokens,
                estimated_cost=estimate,
                status=status,
                started_at=created,
                finished_at=created + timedelta(seconds=60),
            )
            total = Decimal(0)
            request_attempts = []
            how_many = ATTEMPTS_PER_REQUEST[number % len(ATTEMPTS_PER_REQUEST)]
            for attempt_number in range(1, how_many + 1):
                last = attempt_number == how_many
                attempt_route, because = route, ""
                if route.name == "openai" and attempt_number > 1 and rng.random() < 0.3:
                    attempt_route, because = routes["laozhang"], "fallback from openai"
                shape = {
                    "prompt_sha256": request.prompt_sha256,
                    "input_image_count": 0,
                    "size": f"{width}x{height}",
                    "quality": quality,
                    "output_format": "png",
                    "partial_images": 0,
                }
                attempt = Attempt(
                    request=request,
                    number=attempt_number,
                    route=attempt_route,
                    route_owner=attempt_route.owner,
                    routed_because=because,
                    model_requested="gpt-image-2",
                    model_sent="gpt-image-2",
                    request_shape=shape,
                    started_at=created + timedelta(seconds=5 * attempt_number),
                    finished_at=created + timedelta(seconds=5 * attempt_number + 3),
                    latency_ms=int(rng.lognormvariate(9.5, 0.6)),
                    provider_request_id=f"req_{number:08d}_{attempt_number}",
                )
                attempt_per_call = attempt_route.pricing_mode == Route.PricingMode.PER_CALL
                if last and status == Status.SUCCEEDED:
                    attempt.outcome, attempt.http_status = Attempt.Outcome.SUCCEEDED, 200
                    attempt.input_text_tokens, attempt.output_image_tokens = 40, tokens
                    if attempt_per_call:
                        attempt.cost = attempt_route.price_per_call
                        attempt.cost_basis = Attempt.CostBasis.PER_CALL
                    else:
                        attempt.cost = cost_of_usage(
                            Usage(input_text_tokens=40, output_image_tokens=tokens), sheet
                        )
                        attempt.cost_basis, attempt.price_sheet = Attempt.CostBasis.TOKENS, sheet
                else:
                    reason, http_status = rng.choice(failures)
                    attempt.outcome, attempt.http_status = Attempt.Outcome.FAILED, http_status
                    attempt.retry_reason = reason
                    if reason == "timeout":
                        # Sent and never answered: possibly billed, up to the estimate.
                        attempt.cost = None
                        attempt.cost_basis = Attempt.CostBasis.POSSIBLY_BILLED
                        attempt.exposure = estimate
                    else:
                        attempt.cost, attempt.cost_basis = Decimal(0), Attempt.CostBasis.NOT_BILLED
                if attempt.cost is None or total is None:
                    total = None
                else:
                    total += attempt.cost
                request_attempts.append(attempt)
            request.cost = total
            requests.append(request)
            attempts.extend(request_attempts)
        GenerationRequest.objects.bulk_create(requests)
        Attempt.objects.bulk_create(attempts)
        for attempt in attempts:
            if attempt.outcome != Attempt.Outcome.SUCCEEDED:
                continue
            request = attempt.request
            outputs.append(
                OutputImage(
                    request=request,
                    attempt=attempt,
                    file=f"outputs/{request.id}/00-{request.prompt_sha256[:16]}.png",
                    sha256=request.prompt_sha256,
                    bytes=1_500_000,
                    width=request.width,
                    height=request.height,
                    format="png",
                    public_url=f"/media/outputs/{request.id}/00.png",
                    created_at=attempt.finished_at,
                    delete_after=(attempt.finished_at + timedelta(days=90)).date(),
                    review_status=rng.choice(list(ReviewStatus.values)),
                )
            )
        OutputImage.objects.bulk_create(outputs)
        counts["requests"] += len(requests)
        counts["attempts"] += len(attempts)
        counts["outputs"] += len(outputs)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    counts["seconds"] = time.perf_counter() - started
    return counts


def median_ms(client, url: str) -> tuple[float, int, int]:
    """Median server time of GET url over REPEATS runs, its query count and status."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timings, queries, status = [], 0, 0
    for _ in range(REPEATS):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            if response.streaming:
                for _chunk in response.streaming_content:
                    pass
            timings.append((time.perf_counter() - started) * 1000)
        queries, status = len(captured), response.status_code
    return statistics.median(timings), queries, status


def export_csv(client, url: str, traced: bool = False) -> tuple[float, float, int, int]:
    """Seconds, peak traced MiB (when traced), rows and bytes of one streamed CSV export.

    Time and memory come from separate runs: tracing every allocation slows Python down.
    """
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    response = client.get(url)
    rows = size = 0
    for chunk in response.streaming_content:
        rows += chunk.count(b"\n")
        size += len(chunk)
    seconds = time.perf_counter() - started
    peak = 0
    if traced:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return seconds, peak / 2**20, rows - 1, size


def main() -> None:
    recreate_database()
    setup_django()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    print(f"audit bench: building {REQUESTS:,} requests in PostgreSQL ({DATABASE_NAME}) ...")
    counts = build_dataset()
    print(
        f"  {counts['requests']:,} requests, {counts['attempts']:,} attempts, "
        f"{counts['outputs']:,} outputs in {counts['seconds']:.0f} s"
    )
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    today = timezone.localdate()
    everything = {"start": "", "end": ""}
    last_30 = {"start": (today - timedelta(days=29)).isoformat(), "end": today.isoformat()}
    dashboard, attempts = reverse("audit:dashboard"), reverse("audit:attempts")
    cases = [
        ("dashboard, last 30 days (default)", dashboard),
        ("dashboard, all 90 days", f"{dashboard}?{urlencode(everything)}"),
        (
            "dashboard, one route and user",
            f"{dashboard}?{urlencode({**everything, 'route': 'openai', 'user': 'designer007'})}",
        ),
        ("attempt list, page 1 (last 30 days)", attempts),
        ("attempt list, all, page 1", f"{attempts}?{urlencode(everything)}"),
        ("attempt list, all, page 500", f"{attempts}?{urlencode({**everything, 'page': 500})}"),
        (
            "attempt list, timeouts on openai",
            f"{attempts}?{urlencode({**everything, 'route': 'openai', 'reason': 'timeout'})}",
        ),
        ("attempt list, unpriced", f"{attempts}?{urlencode({**everything, 'basis': 'unpriced'})}"),
        ("review queue", reverse("review:queue")),
        (
            "review queue, one designer, text flagged",
            reverse("review:queue") + "?designer=designer007&flagged=text",
        ),
        ("review queue, page 200", f"{reverse('review:queue')}?page=200"),
    ]
    from review import rollups
    from review.models import AuditRollup, AuditRollupState

    started = time.perf_counter()
    summary = rollups.refresh()
    first_build = time.perf_counter() - started
    AuditRollupState.objects.update(built_through=today - timedelta(days=2))
    started = time.perf_counter()
    one_day = rollups.refresh()
    one_build = time.perf_counter() - started
    print(
        f"  rollups: {summary['days']} days into {AuditRollup.objects.count():,} rows in "
        f"{first_build:.1f} s; one more day ({one_day['rows']:,} rows) in {one_build:.2f} s; "
        f"settled through {summary['through']}"
    )
    zone = timezone.get_current_timezone_name()
    cases += [
        (
            "dashboard, failed requests, all time",
            f"{dashboard}?{urlencode({**everything, 'status': 'failed'})}",
        ),
        (
            "dashboard, timeouts, all time",
            f"{dashboard}?{urlencode({**everything, 'reason': 'timeout'})}",
        ),
        (
            "dashboard, one user and quality (ledger)",
            f"{dashboard}?{urlencode({**everything, 'user': 'designer007', 'quality': 'high'})}",
        ),
        ("dashboard, all 90 days, rollups off", f"{dashboard}?{urlencode(everything)}"),
    ]
    client.get(dashboard)  # warm the template cache and the database
    print(f"\nserver time, median of {REPEATS} runs (budget {BUDGET_MS} ms)")
    print(f"{'page':<40} {'median ms':>10} {'queries':>8} {'status':>7}")
    slow = []
    for label, url in cases:
        if label.endswith("rollups off"):  # a state in another zone is not trusted
            AuditRollupState.objects.update(time_zone="rollups off")
        median, queries, status = median_ms(client, url)
        AuditRollupState.objects.update(time_zone=zone)
        flag = "" if median <= BUDGET_MS or label.endswith("rollups off") else "  over budget"
        if flag or status != 200:
            slow.append(label)
        print(f"{label:<40} {median:10.1f} {queries:8d} {status:7d}{flag}")
    export = f"{reverse('audit:export')}?{urlencode(last_30)}"
    seconds, _, rows, size = export_csv(client, export)
    _, peak, _, _ = export_csv(client, export, traced=True)
    print(
        f"\nCSV export, last 30 days: {rows:,} rows, {size / 2**20:.1f} MiB in {seconds:.1f} s; "
        f"peak Python memory while streaming {peak:.1f} MiB"
    )
    if slow:
        print(f"\nover {BUDGET_MS} ms or failed: {', '.join(slow)}")


if __name__ == "__main__":
    main()
