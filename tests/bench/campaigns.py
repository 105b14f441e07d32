"""`make bench` case: campaigns at 1,000 rows.

In a scratch PostgreSQL database of its own, `studio_bench_campaigns` (dropped and created
on every run), it times:

- checking a 1,000-row table and launching it (rows built, budgeted, bulk-created): the
  median of several runs, target <= 2 s;
- the campaign page with 1,000 succeeded rows and their outputs, server time through
  Django's test client (first page of the contact sheet, progress), target <= 200 ms,
  and its SQL query count;
- the ZIP of 1,000 approved 1024x1024 images streamed to nowhere: time, bytes, and the
  peak Python memory while streaming (tracemalloc), which must stay flat (far below the
  size of the archive).

    python -m tests.bench.campaigns

BENCH_POSTGRES_URL names the server (default postgres://postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
import tracemalloc

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
DATABASE_NAME = "studio_bench_campaigns"
ROWS = 1_000
REPEATS = 5
LAUNCH_BUDGET_S = 2.0
PAGE_BUDGET_MS = 200
# Memory while streaming: the manifest's lines and a chunk of rows with their decisions,
# never the images (a run with 2.4 GB of images peaked at 13 MB).
ZIP_MEMORY_BUDGET = 64_000_000


def recreate_database() -> None:
    import psycopg

    try:
        with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True, connect_timeout=5) as db:
            db.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
            db.execute(f"CREATE DATABASE {DATABASE_NAME}")
    except psycopg.OperationalError as error:
        sys.exit(f"PostgreSQL is not reachable at {SERVER_URL}; this bench needs it.\n{error}")


def setup_django() -> None:
    os.environ["DATABASE_URL"] = f"{SERVER_URL}/{DATABASE_NAME}"
    os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="studio-bench-campaigns-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def table_text() -> str:
    lines = ["product,headline,locale,size"]
    for row in range(1, ROWS + 1):
        lines.append(f"product {row},SALE {row},de-DE,1024x1024")
    return "\n".join(lines) + "\n"


def main() -> None:
    recreate_database()
    setup_django()
    try:
        measure()
    finally:
        import shutil

        shutil.rmtree(os.environ["VAR_DIR"], ignore_errors=True)


def measure() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.files.base import ContentFile
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from PIL import Image

    from campaigns import delivery, table
    from campaigns.models import Campaign, launch
    from studio.models import Attempt, GenerationRequest, OutputImage, Route, Status

    call_command("migrate", verbosity=0)
    call_command("seed_studio", verbosity=0, stdout=io.StringIO())
    designer = get_user_model().objects.create_user("bench-designer", password="x")
    designer.groups.add(Group.objects.get_or_create(name="designer")[0])
    route = Route.objects.get(owner="sandbox")
    template = 'A spring poster for {product} that says "{headline}"'
    defaults = table.Defaults(width=1024, height=1024, quality="low", output_format="png")
    scheduled = []
    import campaigns.models

    campaigns.models._release = lambda: scheduled.append(1)  # the workers are not the subject

    def check_and_launch() -> Campaign:
        checked = table.check(
            table.read_rows(table_text()), table.free_prompt_frame(template), defaults
        )
        assert checked.is_valid, checked.problems[:3]
        return launch(
            owner=designer, name="bench", route=route, rows=checked.rows, template=template
        )

    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        campaign = check_and_launch()
        timings.append(time.perf_counter() - started)
        GenerationRequest.objects.filter(campaign=campaign).delete()
        campaign.delete()
    launch_s = statistics.median(timings)
    print(f"campaigns bench ({ROWS:,} rows), median of {REPEATS} runs")
    print(
        f"  check + launch:      {launch_s:6.2f} s   (budget {LAUNCH_BUDGET_S} s) "
        f"{'ok' if launch_s <= LAUNCH_BUDGET_S else 'OVER'}"
    )

    # 1,000 succeeded rows, each with an approved 1024x1024 output.
    campaign = check_and_launch()
    buffer = io.BytesIO()
    picture = Image.new("RGB", (1024, 1024), (200, 210, 230))
    picture.paste(Image.effect_noise((256, 256), 40).convert("RGB"), (384, 384))
    picture.save(buffer, "PNG")
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    GenerationRequest.objects.filter(campaign=campaign).update(
        status=Status.SUCCEEDED, held=False, cost="0.011"
    )
    for request in GenerationRequest.objects.filter(campaign=campaign).select_related("route"):
        attempt = Attempt.begin(request, request.route)
        output = OutputImage(
            request=request,
            attempt=attempt,
            sha256=digest,
            bytes=len(data),
            width=1024,
            height=1024,
            format="png",
            review_status="approved",
        )
        output.file.save("00.png", ContentFile(data), save=False)
        output.save()

    client = Client()
    client.force_login(designer)
    url = campaign.get_absolute_url()
    client.get(url)  # warm up templates
    page_timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(url)
        page_timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    page_ms = statistics.median(page_timings)
    print(
        f"  campaign page:       {page_ms:6.0f} ms  (budget {PAGE_BUDGET_MS} ms) "
        f"{'ok' if page_ms <= PAGE_BUDGET_MS else 'OVER'}, {len(queries)} queries"
    )

    tracemalloc.start()
    started = time.perf_counter()
    total = 0
    for chunk in delivery.zip_chunks(campaign):
        total += len(chunk)
    zip_s = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"  ZIP of {ROWS:,} approved:  {zip_s:6.2f} s, {total / 1e6:,.0f} MB streamed, "
        f"peak Python memory {peak / 1e6:,.1f} MB "
        f"({'flat' if peak < ZIP_MEMORY_BUDGET else 'NOT FLAT'}: budget "
        f"{ZIP_MEMORY_BUDGET / 1e6:.0f} MB whatever the archive's size)"
    )


if __name__ == "__main__":
    main()
