"""Deliver a campaign: its approved outputs as a streamed ZIP with manifest.csv.

The ZIP is written to a pipe that is emptied after every 64 KiB of an image, so memory
stays flat however many images there are (the entries are stored, not deflated: PNG, JPEG
and WebP are compressed already). The manifest comes last, once every file name and
hash is known.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator

from django.core.files.base import ContentFile
from django.db.models import Prefetch

from review.audit import spreadsheet_text
from review.models import Decision, TextInspection
from studio.models import OutputImage, ReviewStatus

CHUNK = 64 * 1024
MANIFEST_COLUMNS = (
    "request_id",
    "row",
    "locale",
    "file_name",
    "sha256",
    "bytes",
    "route",
    "model_sent",
    "cost_usd",
    "decision",
    "reviewer",
    "label_inspections",
)
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
NO_LOCALE = "und"  # BCP 47's "undetermined"


class _Pipe:
    """A write-only, unseekable file for zipfile: what is written is taken out in chunks."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def approved_outputs(campaign):
    """The approved final images of the campaign's current rows, row by row."""
    return (
        OutputImage.objects.filter(
            request__in=campaign.current_requests().order_by().values("pk"),
            kind=OutputImage.Kind.FINAL,
            review_status=ReviewStatus.APPROVED,
            deleted_at__isnull=True,
        )
        .select_related("request", "request__route")
        .prefetch_related(
            Prefetch(
                "decisions",
                queryset=Decision.objects.select_related("reviewer").order_by("-created_at", "-id"),
            ),
            Prefetch("inspections", queryset=TextInspection.objects.order_by("created_at", "id")),
        )
        .order_by("request__campaign_row", "index")
    )


def file_name(pattern: str, output: OutputImage) -> str:
    request = output.request
    name = pattern.format(
        row=request.campaign_row,
        locale=request.campaign_locale or NO_LOCALE,
        width=output.width,
        height=output.height,
        ext="jpg" if output.format == "jpeg" else output.format,
        request_id=request.id,
        index=output.index,
    )
    return UNSAFE_NAME.sub("_", name).lstrip(".") or f"{request.id}-{output.index}"


def _unique(name: str, taken: set[str]) -> str:
    """Two images of one row (n > 1) under a pattern without {index}: number the later ones."""
    candidate, number = name, 1
    stem, dot, ext = name.rpartition(".")
    while candidate in taken:
        number += 1
        candidate = f"{stem}-{number}.{ext}" if dot else f"{name}-{number}"
    taken.add(candidate)
    return candidate


def inspections_text(output: OutputImage) -> str:
    """Each label's latest inspection: label=verdict, with what was seen when it differs."""
    latest: dict[str, TextInspection] = {}
    for inspection in output.inspections.all():
        latest[inspection.label] = inspection
    parts = []
    for label in output.request.expected_text_labels or list(latest):
        inspection = latest.get(label)
        if inspection is None:
            parts.append(f"{label}=not inspected")
        elif inspection.verdict == TextInspection.Verdict.EXACT:
            parts.append(f"{label}=exact")
        else:
            parts.append(f"{label}={inspection.verdict} (saw: {inspection.observed})")
    return "; ".join(parts)


def manifest_row(output: OutputImage, name: str) -> list[str]:
    request = output.request
    decision = next(iter(output.decisions.all()), None)
    row = [
        str(request.id),
        str(request.campaign_row),
        request.campaign_locale,
        name,
        output.sha256,
        str(output.bytes),
        request.route.name,
        request.provider_model,
        "" if request.cost is None else str(request.cost),
        decision.summary if decision else "",
        decision.reviewer.get_username() if decision else "",
        inspections_text(output),
    ]
    # Text from people and providers must not run as a spreadsheet formula.
    return [spreadsheet_text(value) for value in row]


def zip_chunks(campaign) -> Iterator[bytes]:
    pipe = _Pipe()
    taken: set[str] = set()
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(MANIFEST_COLUMNS)
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as archive:
        for output in approved_outputs(campaign).iterator(chunk_size=200):
            name = _unique(file_name(campaign.file_name_pattern, output), taken)
            info = zipfile.ZipInfo(name, date_time=output.created_at.timetuple()[:6])
            try:
                handle = output.file.open("rb")
            except FileNotFoundError:
                continue  # gone from storage: nothing to deliver, and no manifest line
            with handle, archive.open(info, "w", force_zip64=True) as entry:
                while chunk := handle.read(CHUNK):
                    entry.write(chunk)
                    yield pipe.take()
            writer.writerow(manifest_row(output, name))
        archive.writestr("manifest.csv", manifest.getvalue())
    yield pipe.take()


PUBLISH_STORAGE = "campaign_publish"


def publish(campaign) -> int:
    """Copy the approved outputs (named as in the ZIP) and manifest.csv to the
    `campaign_publish` storage (S3 through django-storages when CAMPAIGN_PUBLISH_BUCKET is
    set) under <CAMPAIGN_PUBLISH_PREFIX>/<campaign-id>/; returns how many images. Copying
    again replaces what was published."""
    from django.conf import settings
    from django.core.files.storage import storages

    target = storages[PUBLISH_STORAGE]
    folder = f"{settings.CAMPAIGN_PUBLISH_PREFIX.strip('/')}/{campaign.id}".lstrip("/")
    taken: set[str] = set()
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(MANIFEST_COLUMNS)
    published = 0
    for output in approved_outputs(campaign).iterator(chunk_size=200):
        name = _unique(file_name(campaign.file_name_pattern, output), taken)
        try:
            handle = output.file.open("rb")
        except FileNotFoundError:
            continue
        with handle:
            target.delete(f"{folder}/{name}")
            target.save(f"{folder}/{name}", handle)
        writer.writerow(manifest_row(output, name))
        published += 1
    target.delete(f"{folder}/manifest.csv")
    target.save(f"{folder}/manifest.csv", ContentFile(manifest.getvalue().encode()))
    return published


def read_manifest(data: bytes) -> list[dict[str, str]]:
    """The manifest of a delivered ZIP, as dicts (for tests and scripts)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        text = archive.read("manifest.csv").decode()
    return list(csv.DictReader(io.StringIO(text)))
