"""The overseeing side: who is reviewing what, decisions, and text inspections.

Decisions and inspections are append-only: a new row supersedes, nothing is edited or
deleted, and the latest row is what counts. The output's review status is kept in step
with the latest decision in the same transaction.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from studio.models import GenerationRequest, OutputImage, ReviewStatus


class AppendOnly(models.Model):
    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValidationError(f"{type(self).__name__} rows are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError(f"{type(self).__name__} rows are append-only.")


class ReviewClaim(models.Model):
    """ "Being reviewed by ..." so two reviewers do not do the same work; it expires."""

    output = models.OneToOneField(OutputImage, on_delete=models.CASCADE, related_name="claim")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    claimed_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.output_id} by {self.reviewer}"

    @property
    def is_active(self) -> bool:
        return self.expires_at > timezone.now()

    @classmethod
    def take(cls, output: OutputImage, reviewer) -> ReviewClaim:
        """Claim the output for this reviewer unless someone else holds a live claim."""
        now = timezone.now()
        expires = now + timedelta(minutes=settings.REVIEW_CLAIM_MINUTES)
        with transaction.atomic():
            claim = cls.objects.select_for_update().filter(output=output).first()
            if claim is None:
                return cls.objects.create(
                    output=output, reviewer=reviewer, claimed_at=now, expires_at=expires
                )
            if claim.reviewer_id == reviewer.pk or claim.expires_at <= now:
                claim.reviewer, claim.claimed_at, claim.expires_at = reviewer, now, expires
                claim.save(update_fields=["reviewer", "claimed_at", "expires_at"])
            return claim


class Decision(AppendOnly):
    class Verdict(models.TextChoices):
        # Labels spelled out: TextChoices would title-case the names ("Changes Requested").
        APPROVED = ReviewStatus.APPROVED.value, ReviewStatus.APPROVED.label
        REJECTED = ReviewStatus.REJECTED.value, ReviewStatus.REJECTED.label
        CHANGES_REQUESTED = (
            ReviewStatus.CHANGES_REQUESTED.value,
            ReviewStatus.CHANGES_REQUESTED.label,
        )

    output = models.ForeignKey(OutputImage, on_delete=models.CASCADE, related_name="decisions")
    request = models.ForeignKey(
        GenerationRequest, on_delete=models.CASCADE, related_name="decisions"
    )
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    reason = models.TextField(blank=True)
    # Changes requested on part of the image: the region, as a PNG mask at the output's size
    # (transparent where the designer should change things), ready for a targeted edit.
    region_mask = models.FileField(upload_to="review-masks/", blank=True, max_length=300)
    # An approval while the latest inspection of some label was wrong or missing: those
    # labels, and why the reviewer approved anyway.
    over_text_mismatch = models.BooleanField(default=False, db_index=True)
    mismatched_labels = models.JSONField(default=list, blank=True)
    override_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("approve_own_output", "Can approve outputs of their own requests")]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} by {self.reviewer} on {self.output_id}"

    @property
    def summary(self) -> str:
        """The verdict as people read it, with the override spelled out."""
        if self.over_text_mismatch:
            return "Approved over a text mismatch"
        return self.get_verdict_display()


def may_approve_own_output(user) -> bool:
    """Four eyes: only an explicitly granted permission row (the user's or a group's) lets
    someone approve their own output. `has_perm` is not asked: it is true for every
    superuser, and the demo admin is one."""
    return (
        Permission.objects.filter(content_type__app_label="review", codename="approve_own_output")
        .filter(Q(user=user) | Q(group__user=user))
        .exists()
    )


def mismatched_labels(output: OutputImage) -> list[str]:
    """Expected labels whose latest inspection says wrong or missing."""
    latest = latest_inspections(output)
    return [
        label
        for label in expected_labels(output)
        if label in latest and latest[label].verdict != TextInspection.Verdict.EXACT
    ]


class TextInspection(AppendOnly):
    """What one expected label looks like in the image, as a reviewer confirmed it."""

    class Verdict(models.TextChoices):
        EXACT = "exact", "Exact"
        WRONG = "wrong", "Wrong"
        MISSING = "missing", "Missing"

    class Source(models.TextChoices):
        MANUAL = "manual", "Typed by the reviewer"
        OCR = "ocr", "OCR, confirmed by the reviewer"

    output = models.ForeignKey(OutputImage, on_delete=models.CASCADE, related_name="inspections")
    request = models.ForeignKey(
        GenerationRequest, on_delete=models.CASCADE, related_name="inspections"
    )
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    label = models.CharField(max_length=500)
    observed = models.CharField(max_length=500, blank=True)
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MANUAL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.label!r}: {self.verdict}"


class OcrReading(models.Model):
    """What tesseract read in an output, read once by a task when the output was stored:
    every pass's text, the best reading per expected label and a suggested verdict.
    Suggestions only: a reviewer still confirms every label."""

    output = models.OneToOneField(OutputImage, on_delete=models.CASCADE, related_name="ocr")
    text = models.TextField(blank=True)
    passes = models.JSONField(default=list, blank=True)
    # [{"label", "observed", "verdict", "score"}], one per expected label, in order.
    suggestions = models.JSONField(default=list, blank=True)
    suspects_mismatch = models.BooleanField(default=False, db_index=True)
    languages = models.CharField(max_length=100, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"OCR of {self.output_id}"

    @classmethod
    def read(cls, output: OutputImage) -> OcrReading | None:
        """Read the output's expected labels (or, with none, its text) and keep the result;
        None when tesseract is missing or the file cannot be read."""
        from review import ocr

        try:
            data = output.read()
        except (FileNotFoundError, OSError, ValueError):
            return None
        labels = expected_labels(output)
        reading = ocr.read_labels(data, labels)
        if reading is None:
            return None
        suggestions = [
            {"label": s.label, "observed": s.observed, "verdict": s.verdict, "score": s.score}
            for s in reading.suggestions
        ]
        result, _created = cls.objects.update_or_create(
            output=output,
            defaults={
                "text": reading.text,
                "passes": reading.passes,
                "suggestions": suggestions,
                "suspects_mismatch": reading.suspects_mismatch,
                "languages": reading.languages,
                "seconds": round(reading.seconds, 3),
                "created_at": timezone.now(),
            },
        )
        return result

    def suggestion_list(self):
        from review import ocr

        return [
            ocr.Suggestion(item["label"], item["observed"], item["verdict"])
            for item in self.suggestions
        ]


def awaiting_review():
    """Final outputs of succeeded requests that no decision has closed yet, oldest first."""
    return (
        OutputImage.objects.filter(
            kind=OutputImage.Kind.FINAL,
            request__status="succeeded",
            review_status=ReviewStatus.AWAITING,
            deleted_at__isnull=True,
        )
        .select_related(
            "request", "request__route", "request__created_by", "request__frame_version"
        )
        .order_by("created_at")
    )


def latest_inspections(output: OutputImage) -> dict[str, TextInspection]:
    """The latest inspection per label: the one that counts."""
    latest: dict[str, TextInspection] = {}
    for inspection in output.inspections.order_by("created_at", "id"):
        latest[inspection.label] = inspection
    return latest


def expected_labels(output: OutputImage) -> list[str]:
    """The request's expected labels, or (when it had none) the labels reviewers typed."""
    labels = list(output.request.expected_text_labels)
    for label in output.inspections.values_list("label", flat=True).distinct():
        if label not in labels:
            labels.append(label)
    return labels


def decide(
    output: OutputImage,
    reviewer,
    verdict: str,
    reason: str = "",
    region_mask=None,
    override_reason: str = "",
) -> Decision:
    """Record a decision and move the output's review status, in one transaction.

    Approval needs every expected label inspected, and an override reason when the latest
    inspection of any label is wrong or missing; a designer approves their own output only
    with an explicitly granted approve_own_output; rejections and change requests need a
    reason.
    """
    if (
        verdict in (Decision.Verdict.REJECTED, Decision.Verdict.CHANGES_REQUESTED)
        and not reason.strip()
    ):
        raise ValidationError({"reason": "Say why: the designer sees this reason."})
    if verdict == Decision.Verdict.APPROVED:
        own = output.request.created_by_id == reviewer.pk
        if own and not may_approve_own_output(reviewer):
            raise PermissionDenied(
                "You cannot approve an output of your own request: another reviewer must."
            )
        inspected = latest_inspections(output)
        missing = [label for label in expected_labels(output) if label not in inspected]
        if missing:
            raise ValidationError(
                {
                    "verdict": "Inspect every expected label before approving: "
                    + ", ".join(f'"{label}"' for label in missing)
                    + "."
                }
            )
    mismatched = mismatched_labels(output) if verdict == Decision.Verdict.APPROVED else []
    if mismatched and not override_reason.strip():
        raise ValidationError(
            {
                "override_reason": "The latest inspection found "
                + ", ".join(f'"{label}"' for label in mismatched)
                + " wrong or missing: give an override reason to approve over a text "
                "mismatch, or request changes."
            }
        )
    with transaction.atomic():
        decision = Decision.objects.create(
            output=output,
            request=output.request,
            reviewer=reviewer,
            verdict=verdict,
            reason=reason.strip(),
            region_mask=region_mask or "",
            over_text_mismatch=bool(mismatched),
            mismatched_labels=mismatched,
            override_reason=override_reason.strip() if mismatched else "",
        )
        output.review_status = verdict
        output.save(update_fields=["review_status"])
        ReviewClaim.objects.filter(output=output).delete()
    return decision


def inspect_text(
    output: OutputImage,
    reviewer,
    label: str,
    observed: str,
    verdict: str,
    source: str = TextInspection.Source.MANUAL,
) -> TextInspection:
    with transaction.atomic():
        inspection = TextInspection.objects.create(
            output=output,
            request=output.request,
            reviewer=reviewer,
            label=label,
            observed=observed,
            verdict=verdict,
            source=source,
        )
        mismatch = any(
            i.verdict != TextInspection.Verdict.EXACT for i in latest_inspections(output).values()
        )
        if output.text_mismatch != mismatch:
            output.text_mismatch = mismatch
            output.save(update_fields=["text_mismatch"])
    return inspection


def overrides():
    """Approvals over a text mismatch, newest first: what the queue and the audit list."""
    return Decision.objects.filter(over_text_mismatch=True).select_related(
        "reviewer", "request", "request__created_by"
    )


def latest_decision_subquery():
    return Subquery(
        Decision.objects.filter(output=OuterRef("pk"))
        .order_by("-created_at", "-id")
        .values("verdict")[:1]
    )


class AuditRollup(models.Model):
    """Daily sums of the attempt ledger, for days that can no longer change.

    Each row is one group of one kind: a day and that kind's dimensions (the others are
    left empty), with the same measures the live ledger query computes. The audit reads
    these for settled days and the attempts themselves for the days after; see
    `review.rollups`. Rows are rebuilt, never edited; ids are plain integers so a rollup
    never holds a lock on the ledger.
    """

    class Kind(models.TextChoices):
        CALLS = "calls", "Routes, models, reasons, outcomes"
        USERS = "users", "... and the requesting user"
        SETTINGS = "settings", "... and the requested quality and size"
        LATENCY = "latency", "Latency bands per route and request status"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    day = models.DateField()
    route_id = models.IntegerField(null=True)
    submitted_route_id = models.IntegerField(null=True)
    route_owner = models.CharField(max_length=100, blank=True)
    model_requested = models.CharField(max_length=100, blank=True)
    model_sent = models.CharField(max_length=100, blank=True)
    retry_reason = models.CharField(max_length=20, blank=True)
    outcome = models.CharField(max_length=20, blank=True)
    cost_basis = models.CharField(max_length=20, blank=True)
    request_status = models.CharField(max_length=20, blank=True)
    user_id = models.IntegerField(null=True)
    quality = models.CharField(max_length=10, blank=True)
    width = models.IntegerField(null=True)
    height = models.IntegerField(null=True)
    band = models.IntegerField(null=True, help_text="Latency band: floor(ln(ms) / ln(1.02)).")
    # Measures, as `review.rollups.live_measures` defines them.
    attempts = models.IntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=6, null=True)
    exposure = models.DecimalField(max_digits=18, decimal_places=6, null=True)
    image_tool_cost = models.DecimalField(max_digits=18, decimal_places=6, null=True)
    mainline_cost = models.DecimalField(max_digits=18, decimal_places=6, null=True)
    mainline_input_tokens = models.BigIntegerField(null=True)
    mainline_output_tokens = models.BigIntegerField(null=True)
    retries = models.IntegerField(default=0)
    requests = models.IntegerField(default=0)
    compared = models.IntegerField(default=0)
    estimated = models.DecimalField(max_digits=18, decimal_places=6, null=True)
    actual = models.DecimalField(max_digits=18, decimal_places=6, null=True)

    class Meta:
        indexes = [
            models.Index(fields=["kind", "day"], name="audit_rollup_kind_day"),
            # A user filter reads one user's rows of the "users" kind, not all of them.
            models.Index(fields=["kind", "user_id", "day"], name="audit_rollup_kind_user"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.day}: {self.attempts} attempts"


class AuditRollupState(models.Model):
    """One row: the last day the rollups hold, and the time zone their days are in."""

    built_through = models.DateField(null=True)
    time_zone = models.CharField(max_length=64, blank=True)
    refreshed_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"rollups through {self.built_through or 'nothing'}"
