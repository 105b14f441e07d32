"""Admin audit pages: the dashboard, the attempt ledger and its CSV export.

All three read the same GET filters through `audit.read_filters` and start from the same
queryset, `audit.filtered_attempts`, so every figure drills down to the attempts behind it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from itertools import chain, islice

from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from review import audit
from review.analytics import frame_analytics
from review.models import overrides
from studio.views import role_required

ATTEMPTS_PER_PAGE = 50
CSV_LINES_PER_CHUNK = 500


@role_required("admin")
@require_safe
def dashboard(request):
    filters, form = audit.read_filters(request.GET)
    context = {
        "form": form,
        "filters": filters,
        "presets": audit.presets(filters),
        **audit.dashboard(filters, form.routes),
        "overrides": overrides()[:20],
        "override_count": overrides().count(),
    }
    return render(request, "review/audit/dashboard.html", context)


@role_required("admin")
@require_safe
def frames(request):
    """Per frame and frame version: volume, review outcomes, label exactness, cost."""
    frame_key = request.GET.get("frame") or None
    context = {"rows": frame_analytics(frame_key), "frame_key": frame_key}
    return render(request, "review/audit/frames.html", context)


@role_required("admin")
@require_safe
def attempts(request):
    filters, form = audit.read_filters(request.GET)
    page = audit.ledger_page(filters, request.GET.get("page"), ATTEMPTS_PER_PAGE)
    context = {
        "form": form,
        "filters": filters,
        "presets": audit.presets(filters),
        "page": page,
        "querystring": filters.querystring(),
    }
    return render(request, "review/audit/attempts.html", context)


class _Echo:
    """A file-like object for csv.writer that hands back each line instead of storing it."""

    def write(self, text: str) -> str:
        return text


def _csv_chunks(lines: Iterable[list[str]]) -> Iterator[str]:
    writer, lines = csv.writer(_Echo()), iter(lines)
    while chunk := list(islice(lines, CSV_LINES_PER_CHUNK)):
        yield "".join(writer.writerow(line) for line in chunk)


@role_required("admin")
@require_safe
def export(request):
    """The filtered ledger as CSV, streamed as the database cursor yields rows."""
    filters, _ = audit.read_filters(request.GET)
    site = request.build_absolute_uri("/").rstrip("/")
    lines = chain([audit.CSV_HEADER], audit.csv_rows(filters, site=site))
    response = StreamingHttpResponse(_csv_chunks(lines), content_type="text/csv; charset=utf-8")
    start = filters.start.isoformat() if filters.start else "first"
    end = (filters.end or timezone.localdate()).isoformat()
    response["Content-Disposition"] = f'attachment; filename="studio-attempts-{start}-to-{end}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response
