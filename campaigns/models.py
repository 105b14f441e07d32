"""Campaigns: one frame (or a free prompt with {slot} gaps) times a table of rows.

Each row becomes an ordinary GenerationRequest (its `campaign` and `campaign_row`), built by
the same `GenerationRequest.build` the composer's `submit` uses and run by the same task.
A campaign is checked, estimated and budgeted as a whole when it is launched; its rows are
held and released to the workers a fair share at a time (campaigns.scheduling).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.urls import reverse
from django.utils import timezone

from studio import billing
from studio.models import (
    DEFAULT_MODEL,
    LOOK_UP,
    Attempt,
    Budget,
    GenerationRequest,
    InputImage,
    PriceSheet,
    PromptFrameVersion,
    Route,
    Status,
    SubmissionFlood,
)

log = logging.getLogger(__name__)
DEFAULT_FILE_NAME_PATTERN = "{row}-{locale}-{width}x{height}.{ext}"
POSSIBLY_BILLED_BASES = [
    basis
    for basis, state in billing.BILLING_BY_BASIS.items()
    if state == billing.Billing.POSSIBLY_BILLED
]


class Campaign(models.Model):
    class State(models.TextChoices):
        RUNNING = "running", "Running"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField("campaign ID", primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="campaigns"
    )
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    frame_version = models.ForeignKey(
        PromptFrameVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    template = models.TextField(
        blank=True, help_text="The free prompt with {slot} gaps, when there is no frame."
    )
    route = models.ForeignKey(Route, on_delete=models.PROTECT, related_name="campaigns")
    status = models.CharField(max_length=20, choices=State.choices, default=State.RUNNING)

    class Mode(models.TextChoices):
        NOW = "now", "Now (Image API)"
        BATCH = "batch", "Within 24 h at the batch price (Batch API)"

    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.NOW)
    row_count = models.PositiveIntegerField(default=0)
    estimated_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    file_name_pattern = models.CharField(max_length=200, default=DEFAULT_FILE_NAME_PATTERN)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("campaigns:detail", args=[self.id])

    # --- Rows --------------------------------------------------------------------------------

    def current_requests(self) -> models.QuerySet[GenerationRequest]:
        """The request that counts for each row: the newest one (a row run again has
        several)."""
        newer = GenerationRequest.objects.filter(
            campaign_id=self.pk,
            campaign_row=OuterRef("campaign_row"),
            created_at__gt=OuterRef("created_at"),
        )
        return (
            GenerationRequest.objects.filter(campaign=self)
            .exclude(Exists(newer))
            .order_by("campaign_row")
        )

    def progress(self) -> Progress:
        """Where the rows stand, and what the campaign has cost so far (every request of the
        campaign counts, rows run again included)."""
        counts = dict(
            self.current_requests()
            .order_by()
            .values_list("status")
            .annotate(count=Count("pk"))
            .values_list("status", "count")
        )
        spent = GenerationRequest.objects.filter(campaign=self).aggregate(
            known=Sum("cost"), unknown=Sum("exposure", filter=Q(cost__isnull=True))
        )
        possibly_billed = (
            self.current_requests()
            .filter(
                Exists(
                    Attempt.objects.filter(
                        request=OuterRef("pk"), cost_basis__in=POSSIBLY_BILLED_BASES
                    )
                )
            )
            .count()
        )
        return Progress(
            total=self.row_count,
            queued=counts.get(Status.QUEUED, 0),
            running=counts.get(Status.RUNNING, 0),
            succeeded=counts.get(Status.SUCCEEDED, 0),
            failed=counts.get(Status.FAILED, 0) + counts.get(Status.REFUSED, 0),
            cancelled=counts.get(Status.CANCELLED, 0),
            possibly_billed=possibly_billed,
            cost=spent["known"] or Decimal(0),
            exposure=spent["unknown"],
            estimate=self.estimated_cost,
        )

    # --- What the owner does -----------------------------------------------------------------

    def cancel_remaining(self, by) -> int:
        """Cancel every row not yet ended; a call already out still finishes (and is paid)."""
        cancelled = 0
        with transaction.atomic():
            Campaign.objects.filter(pk=self.pk).update(status=self.State.CANCELLED)
            held = GenerationRequest.objects.filter(campaign=self, status=Status.QUEUED, held=True)
            # Held rows were never sent: nothing was called, nothing is owed.
            cancelled += held.update(
                status=Status.CANCELLED,
                held=False,
                cost=Decimal(0),
                failure_reason="cancelled",
                failure_message=f"Cancelled by {by.get_username()} before it was sent.",
                finished_at=timezone.now(),
            )
            for request in GenerationRequest.objects.filter(
                campaign=self, status__in=[Status.QUEUED, Status.RUNNING]
            ):
                cancelled += request.cancel(by)
        self.refresh_from_db(fields=["status"])
        if self.mode == self.Mode.BATCH:
            from campaigns.batches import cancel_open_batches

            cancel_open_batches(self)
        return cancelled

    def retry_failed(self, by) -> tuple[int, int]:
        """Run failed rows again as new requests; a row whose request may have been billed
        is left alone (the owner may run it again by hand). Returns (retried, left)."""
        failed = list(self.current_requests().filter(status=Status.FAILED))
        again = [request for request in failed if not request.may_have_been_billed()]
        self.run_again(by, again)
        return len(again), len(failed) - len(again)

    def run_row_again(self, by, row: int) -> GenerationRequest | None:
        """Run one row again, whatever its last request did: the owner asked for it."""
        current = self.current_requests().filter(campaign_row=row).first()
        if current is None or not current.is_terminal:
            return None
        return self.run_again(by, [current])[0]

    def run_again(self, by, requests: list[GenerationRequest]) -> list[GenerationRequest]:
        """New requests for these rows, as they were asked, budgeted together and held for
        the scheduler like the first ones."""
        if not requests:
            return []
        sheet = price_sheet_for(self.mode)
        built = [
            _row_request(
                self,
                by,
                row=request.campaign_row,
                locale=request.campaign_locale,
                prompt=request.prompt,
                slot_values=request.slot_values,
                labels=request.expected_text_labels,
                settings=request.image_settings(),
                price_sheet=sheet,
                source=_source_of(request),
            )
            for request in requests
        ]
        with transaction.atomic():
            SubmissionFlood.enforce(by)
            _enforce_budget(by, self.route, built)
            _create_rows(built)
            Campaign.objects.filter(pk=self.pk).update(status=self.State.RUNNING)
            transaction.on_commit(_start(self))
        return built


def _source_of(request: GenerationRequest):
    """The checked source image an edit row was run with, to run it again."""
    if not request.is_edit:
        return None
    source = request.source_input
    return None if source is None else source.checked()


@dataclass(frozen=True)
class Progress:
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    possibly_billed: int
    cost: Decimal
    exposure: Decimal | None
    estimate: Decimal | None

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def is_done(self) -> bool:
        return self.queued + self.running == 0

    @property
    def segments(self) -> list[tuple[str, int, int]]:
        """(state, start, width) in rows, for the progress bar."""
        parts, start = [], 0
        for name in ("succeeded", "failed", "running", "cancelled"):
            width = getattr(self, name)
            if width:
                parts.append((name, start, width))
                start += width
        return parts


def _row_request(
    campaign,
    owner,
    *,
    row,
    locale,
    prompt,
    slot_values,
    labels,
    settings,
    price_sheet=LOOK_UP,
    source=None,
):
    """One row's request, unsaved; with a source (a checked image) it is an edit of it."""
    edit = {}
    if source is not None:
        edit = {
            "operation": GenerationRequest.Operation.EDIT,
            "input_sizes": [(source.width, source.height)],
            "parent_output": source.from_output,
        }
    request = GenerationRequest.build(
        **edit,
        price_sheet=price_sheet,
        created_by=owner,
        route=campaign.route,
        prompt=prompt,
        frame_version=campaign.frame_version,
        slot_values=slot_values,
        expected_text_labels=labels,
        **settings,
    )
    request.campaign = campaign
    request.campaign_row = row
    request.campaign_locale = locale
    request.held = True
    request.source = source  # stored with the row once it is saved (_store_sources)
    return request


def _store_sources(requests: list[GenerationRequest]) -> list[str]:
    """Keep each edit row's source under inputs/<request-id>/, as the edit page does; the
    names stored, for the caller to delete if the transaction fails."""
    stored = []
    for request in requests:
        if getattr(request, "source", None) is not None:
            stored.append(InputImage.store(request, 0, request.source).file.name)
    return stored


def _create_rows(requests: list[GenerationRequest]) -> None:
    """Insert the rows and their sources; inside the caller's transaction. Files stored
    before a failure are deleted (the rows roll back with the transaction)."""
    stored: list[str] = []
    try:
        GenerationRequest.objects.bulk_create(requests, batch_size=500)
        stored = _store_sources(requests)
    except BaseException:
        for name in stored:
            default_storage.delete(name)
        raise


def _enforce_budget(owner, route: Route, requests: list[GenerationRequest]) -> None:
    """One budget check for the total; unpriced anywhere means the total is unknown."""
    if route.is_sandbox:
        return
    estimates = [request.estimated_cost for request in requests]
    total = None if any(e is None for e in estimates) else sum(estimates, Decimal(0))
    Budget.enforce(owner, total)


def _release() -> None:
    from campaigns.scheduling import release_rows

    release_rows()


def _start(campaign: Campaign):
    """What runs the campaign's waiting rows once they are committed: the fair scheduler
    (now), or a batch submitted by a worker (batch)."""
    if campaign.mode != Campaign.Mode.BATCH:
        return _release

    def send_batch() -> None:
        from campaigns.tasks import submit_campaign_batch

        try:
            submit_campaign_batch.delay(str(campaign.id))
        except Exception:
            log.exception(
                "campaign %s: could not reach the broker; poll will not see it", campaign.id
            )

    return send_batch


def price_sheet_for(mode: str):
    """The price sheet a campaign's estimate uses: the batch tier for batch campaigns."""
    tier = PriceSheet.Tier.BATCH if mode == Campaign.Mode.BATCH else PriceSheet.Tier.STANDARD
    return PriceSheet.objects.in_force(DEFAULT_MODEL, tier=tier)


def launch(
    *,
    owner,
    name: str,
    route: Route,
    rows,
    frame_version: PromptFrameVersion | None = None,
    template: str = "",
    file_name_pattern: str = DEFAULT_FILE_NAME_PATTERN,
    mode: str = Campaign.Mode.NOW,
) -> Campaign:
    """Record a campaign and its rows (RowSpecs from a valid table) in one transaction.

    The submission limit counts this campaign once; the budget is checked once for the
    total estimate (raises BudgetExceeded, leaving nothing behind). The rows are held and
    released to the workers by the scheduler, starting when the transaction commits.
    """
    with transaction.atomic():
        SubmissionFlood.enforce(owner)
        campaign = Campaign.objects.create(
            owner=owner,
            name=name,
            route=route,
            frame_version=frame_version,
            template=template,
            row_count=len(rows),
            file_name_pattern=file_name_pattern,
            mode=mode,
        )
        sheet = price_sheet_for(mode)  # once, not once a row
        requests = [
            _row_request(
                campaign,
                owner,
                row=spec.number,
                locale=spec.locale,
                prompt=spec.prompt,
                slot_values=spec.values,
                labels=spec.labels,
                settings={
                    "width": spec.width,
                    "height": spec.height,
                    "quality": spec.quality,
                    "output_format": spec.output_format,
                    "n": spec.n,
                },
                price_sheet=sheet,
                source=spec.source,
            )
            for spec in rows
        ]
        _enforce_budget(owner, route, requests)
        estimates = [request.estimated_cost for request in requests]
        campaign.estimated_cost = (
            None if any(e is None for e in estimates) else sum(estimates, Decimal(0))
        )
        campaign.save(update_fields=["estimated_cost"])
        _create_rows(requests)
        transaction.on_commit(_start(campaign))
    return campaign


class CampaignBatch(models.Model):
    """One Batch API batch of a campaign's rows: the input file, the provider's batch, and
    where it stands. Polled by celery beat until it is over, then settled line by line."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="batches")
    route = models.ForeignKey(Route, on_delete=models.PROTECT, related_name="+")
    input_file_id = models.CharField(max_length=100)
    batch_id = models.CharField(max_length=100, db_index=True)
    provider_status = models.CharField(max_length=20, default="validating")
    lines = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    polled_at = models.DateTimeField(null=True, blank=True)
    # One poller settles a batch: it claims it first (a claim older than SETTLE_CLAIM is
    # taken to be a poller that died, and is taken over).
    settling_since = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True, db_index=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.batch_id
