"""`make bench` case: "My requests" at a million rows.

Builds 1,000,000 requests for ONE designer (the worst case: every row is theirs) in a scratch
PostgreSQL database of its own, `studio_bench_gallery`, dropped and created on every run,
then times the gallery server-side through Django's test client: the first page, a page half
a million rows deep (by cursor), a prompt search, a request-ID prefix search and the status
and review filters. Medians of several runs and the SQL each page makes.

    python -m tests.bench.gallery

BENCH_POSTGRES_URL names the server (default postgres://postgres@127.0.0.1:5432);
GALLERY_ROWS changes the number of requests.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
DATABASE_NAME = "studio_bench_gallery"
ROWS = int(os.environ.get("GALLERY_ROWS", "1000000"))
REPEATS = 7


def recreate_database() -> None:
    import psycopg

    try:
        with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True, connect_timeout=5) as db:
            db.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
            db.execute(f"CREATE DATABASE {DATABASE_NAME}")
    except psycopg.OperationalError as error:
        sys.exit(
            f"PostgreSQL is not reachable at {SERVER_URL}; the gallery bench needs it.\n{error}"
        )


def setup_django() -> None:
    os.environ["DATABASE_URL"] = f"{SERVER_URL}/{DATABASE_NAME}"
    os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="studio-bench-gallery-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def build_dataset():
    """One template request copied ROWS times by generate_series, a minute apart, with
    distinct prompts; every 7th failed; outputs on every 50th, every 3rd of those approved."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from studio.models import Attempt, GenerationRequest, OutputImage, Route

    call_command("migrate", verbosity=0)
    designer = get_user_model().objects.create_user("bench-designer", password="x")
    designer.groups.add(Group.objects.get_or_create(name="designer")[0])
    route = Route.objects.create(name="sandbox", owner="sandbox")
    template = GenerationRequest.objects.create(
        created_by=designer,
        created_at=timezone.now(),
        route=route,
        prompt="template",
        prompt_sha256="0" * 64,
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
        provider_model="gpt-image-2",
        status="succeeded",
    )
    table = GenerationRequest._meta.db_table
    columns = [
        f.column
        for f in GenerationRequest._meta.concrete_fields
        if f.column not in ("id", "created_at", "prompt", "status")
    ]
    listed = ", ".join(columns)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, created_at, prompt, status, {listed}) "
            f"SELECT gen_random_uuid(), now() - g * interval '1 minute', "
            f"'Poster ' || g || ' ' || md5(g::text), "
            f"CASE WHEN g %% 7 = 0 THEN 'failed' ELSE 'succeeded' END, {listed} "
            f"FROM generate_series(1, %s) AS g, {table} AS t WHERE t.id = %s",
            [ROWS, template.id],
        )
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [template.id])
        attempt_table = Attempt._meta.db_table
        output_table = OutputImage._meta.db_table
        cursor.execute(
            f"INSERT INTO {attempt_table} (request_id, number, route_id, route_owner, "
            "routed_because, model_requested, model_sent, request_shape, outcome, "
            "provider_request_id, error_code, error_message, retry_reason, started_at, "
            "input_text_tokens, input_image_tokens, cached_input_tokens, output_image_tokens, "
            "output_text_tokens, cost_basis, mainline_model, mainline_input_tokens, "
            "mainline_output_tokens, usage_shape, billing_note) "
            f"SELECT id, 1, route_id, 'sandbox', '', 'gpt-image-2', 'gpt-image-2', '{{}}', "
            "'succeeded', '', '', '', '', created_at, 0, 0, 0, 0, 0, 'simulated', '', 0, 0, '', '' "
            f"FROM (SELECT id, route_id, created_at, row_number() OVER () AS r FROM {table}) s "
            "WHERE r % 50 = 0"
        )
        cursor.execute(
            f"INSERT INTO {output_table} (id, request_id, attempt_id, index, kind, file, sha256, "
            "bytes, width, height, format, public_url, created_at, review_status, "
            "text_mismatch, drift_flagged) "
            "SELECT gen_random_uuid(), a.request_id, a.id, 0, 'final', "
            "'outputs/' || a.request_id || '/00.png', md5(a.id::text), 1000, 1024, 1024, 'png', "
            "'', a.started_at, CASE WHEN a.id % 3 = 0 THEN 'approved' ELSE 'awaiting' END, "
            f"false, false FROM {attempt_table} a"
        )
        cursor.execute(f"ANALYZE {table}")
        cursor.execute(f"ANALYZE {output_table}")
    print(f"built {ROWS:,} requests in {time.perf_counter() - started:.1f} s")
    return designer


def median_ms(action) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> None:
    recreate_database()
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from studio.models import GalleryCursor, GenerationRequest

    designer = build_dataset()
    setup_test_environment()  # the test client then keeps each response's context
    client = Client()
    client.force_login(designer)
    url = reverse("studio:request-list")
    middle = GenerationRequest.objects.order_by("-created_at", "-id")[ROWS // 2]
    some_id = str(middle.id)
    cases = {
        "first page (grid)": {},
        "first page (table)": {"view": "table"},
        f"page {ROWS // 2:,} rows deep": {"older": str(GalleryCursor.of(middle))},
        "search prompt text": {"q": "Poster 123456 "},
        "search a rare word": {"q": md5_of(777)},
        "search request ID prefix": {"q": some_id[:8]},
        "search full request ID": {"q": some_id},
        "status: failed": {"status": "failed"},
        "review: approved": {"review": "approved"},
    }
    print(f"gallery at {ROWS:,} requests of one designer, median of {REPEATS} runs")
    print(f"{'case':>28} {'ms':>8} {'queries':>8} {'rows':>5}")
    for name, params in cases.items():
        response = client.get(url, params)
        assert response.status_code == 200, (name, response.status_code)
        queries = []
        with connection.execute_wrapper(
            lambda run, sql, *rest, seen=queries: seen.append(sql) or run(sql, *rest)
        ):
            client.get(url, params)
        elapsed = median_ms(lambda p=params: client.get(url, p))
        rows = len(response.context["page"])
        print(f"{name:>28} {elapsed:8.1f} {len(queries):8} {rows:5}")


def md5_of(number: int) -> str:
    import hashlib

    return hashlib.md5(str(number).encode()).hexdigest()


if __name__ == "__main__":
    main()
