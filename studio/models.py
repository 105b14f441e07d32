from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q, Sum, Value
from django.db.models.functions import Coalesce, Concat
from django.dispatch import Signal
from django.urls import reverse
from django.utils import timezone

from studio import billing, imagerules, pricing
from studio.pricing import money
from studio.uploads import CheckedImage

DEFAULT_MODEL = "gpt-image-2"
LOOK_UP = object()  # Route.estimate: look the price sheet up (the caller did not)
DEFAULT_ASSISTANT_MODEL = "gpt-5.4"
IMAGE_MODEL_PREFIXES = ("gpt-image", "dall-e", "chatgpt-image")


def is_image_model(name: str) -> bool:
    """Image models go in the image_generation tool, never in a Responses `model` field."""
    return name.strip().lower().startswith(IMAGE_MODEL_PREFIXES)


log = logging.getLogger(__name__)

# Sent once when a request ends (succeeded, failed, refused, cancelled), with `request`:
# webhooks (api.webhooks) listen. Receivers must not raise.
request_ended = Signal()


class Route(models.Model):
    """A contract with one owner: OpenAI itself, a named provider gateway, or the sandbox."""

    class PricingMode(models.TextChoices):
        TOKENS = "tokens", "Per token (price sheet)"
        PER_CALL = "per_call", "Flat price per call"

    name = models.CharField(max_length=100, unique=True)
    owner = models.CharField(
        max_length=100,
        help_text="Who bills and answers for this route: openai, a provider such as "
        "laozhang.ai, or sandbox.",
    )
    base_url = models.URLField(
        blank=True,
        help_text="API base URL. Empty for the sandbox: the studio's own SANDBOX_BASE_URL.",
    )
    api_key_env = models.CharField(
        "API key variable",
        max_length=100,
        blank=True,
        help_text="Name of the environment variable holding the key. The key itself is "
        "never stored.",
    )
    model_map = models.JSONField(
        default=dict,
        blank=True,
        help_text='Requested model -> model sent to this provider, e.g. {"gpt-image-2": '
        '"gpt-image-2"}. A model not listed is sent as requested.',
    )
    pricing_mode = models.CharField(
        max_length=20, choices=PricingMode.choices, default=PricingMode.TOKENS
    )
    price_per_call = models.DecimalField(
        "USD per call", max_digits=10, decimal_places=4, null=True, blank=True
    )
    # The seeds: complex prompts take up to about 2 minutes; 300 s leaves a wide margin.
    timeout_seconds = models.PositiveIntegerField(default=300)
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Delete outputs this many days after creation; empty: "
        "the studio's OUTPUT_RETENTION_DAYS.",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=3, help_text="Calls one request may make on this route, retries included."
    )
    timeout_retries = models.PositiveSmallIntegerField(
        default=0,
        help_text="Calls sent again after a timeout. A timed-out call may have been billed, "
        "so each retry may bill again: 0 (the default) never does; a retry is also never "
        "made when the possible spend would not fit a budget.",
    )
    enabled = models.BooleanField(default=True)
    fallback = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    supports_edits = models.BooleanField(default=True)
    supports_masks = models.BooleanField(default=True)
    supports_assistant = models.BooleanField(default=False)
    supports_streaming = models.BooleanField(default=False)
    supports_transparent = models.BooleanField(default=False)
    supports_batch = models.BooleanField(
        default=False,
        help_text="Takes OpenAI's Files + Batch API (within 24 h, at the batch price).",
    )
    assistant_model = models.CharField(
        max_length=100,
        default=DEFAULT_ASSISTANT_MODEL,
        help_text="The mainline model assistant conversations call through the Responses API "
        "(it calls the image_generation tool). Never an image model.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner})"

    @property
    def is_sandbox(self) -> bool:
        return self.owner == "sandbox"

    def clean(self) -> None:
        longest = settings.CELERY_TASK_SOFT_TIME_LIMIT - settings.LEASE_GRACE_SECONDS
        if self.timeout_seconds > longest:
            raise ValidationError(
                {
                    "timeout_seconds": f"At most {longest} s: a call must end well inside the "
                    f"worker's {settings.CELERY_TASK_SOFT_TIME_LIMIT} s task limit."
                }
            )
        if self.pricing_mode == self.PricingMode.PER_CALL and self.price_per_call is None:
            raise ValidationError({"price_per_call": "A per-call route needs its price per call."})
        if is_image_model(self.assistant_model):
            raise ValidationError(
                {
                    "assistant_model": f"{self.assistant_model} is an image model: the Responses "
                    f"API needs a mainline model such as {DEFAULT_ASSISTANT_MODEL}, which calls "
                    "the image model through its image_generation tool."
                }
            )

    def endpoint(self) -> str:
        if self.base_url:
            return self.base_url
        if self.is_sandbox:
            return settings.SANDBOX_BASE_URL
        return ""

    def api_key(self) -> str | None:
        """The key from the environment variable the route names; None when unset."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None

    def configuration_problem(self) -> str | None:
        """Why this route cannot be called right now, or None when it can."""
        if not self.enabled:
            return f"Route {self.name} is disabled."
        if not self.endpoint():
            return f"Route {self.name} has no base URL."
        if not self.is_sandbox and self.api_key() is None:
            return (
                f"Route {self.name} has no API key: set the environment variable "
                f"{self.api_key_env or '(none named)'} for the web and worker processes."
            )
        return None

    def retention(self) -> int:
        """Days an output of this route is kept before retention deletes its file."""
        if self.retention_days is not None:
            return self.retention_days
        return settings.OUTPUT_RETENTION_DAYS

    def can_serve(self, request: GenerationRequest) -> bool:
        """Whether this route has every capability the request needs."""
        needs = {
            "supports_edits": request.operation == GenerationRequest.Operation.EDIT,
            "supports_masks": request.has_mask,
            "supports_assistant": request.operation == GenerationRequest.Operation.ASSISTANT,
            "supports_streaming": request.partial_images > 0,
            "supports_transparent": request.background == "transparent",
        }
        return all(getattr(self, capability) for capability, needed in needs.items() if needed)

    def model_sent_for(self, requested: str) -> str:
        return self.model_map.get(requested, requested)

    @property
    def pricing_label(self) -> str:
        """How this contract charges, in its own terms (never another contract's prices)."""
        if self.pricing_mode == self.PricingMode.PER_CALL:
            if self.price_per_call is None:
                return f"{self.owner} flat price per call (unpriced: no price set)"
            return f"{money(self.price_per_call)} per image, {self.owner}'s flat price"
        if self.is_sandbox:
            return "simulated at OpenAI's token prices, not billed"
        return "per token, OpenAI price sheet"

    def estimate(
        self,
        *,
        prompt: str,
        width: int,
        height: int,
        quality: str,
        n: int = 1,
        partial_images: int = 0,
        requested_model: str = DEFAULT_MODEL,
        input_images: Sequence[tuple[int, int]] = (),
        price_sheet: PriceSheet | object | None = LOOK_UP,
    ) -> pricing.Estimate:
        """The cost estimate shown before submission and stored on the request. A caller
        estimating many requests at once may pass the sheet in force (or None) it looked up."""
        per_call = self.pricing_mode == self.PricingMode.PER_CALL
        if price_sheet is LOOK_UP and not per_call:
            price_sheet = PriceSheet.objects.in_force(requested_model)
        return pricing.estimate_request(
            width=width,
            height=height,
            quality=quality,
            n=n,
            partial_images=partial_images,
            prompt=prompt,
            sheet=None if per_call else price_sheet,
            price_per_call=self.price_per_call if per_call else None,
            input_images=input_images,
        )


class PriceSheetQuerySet(models.QuerySet):
    def in_force(self, model: str, at=None, tier: str = "standard") -> PriceSheet | None:
        """The sheet for `model` at `at` (now) in a tier: standard, or batch (the Batch API's
        prices, for calls sent in a batch)."""
        at = at or timezone.now()
        return (
            self.filter(model=model, tier=tier, effective_from__lte=at)
            .order_by("-effective_from")
            .first()
        )


class PriceSheet(models.Model):
    """Per-token prices for one model from a date on, USD per 1M tokens."""

    model = models.CharField(max_length=100)
    effective_from = models.DateTimeField()
    text_input = models.DecimalField(max_digits=10, decimal_places=4)
    cached_text_input = models.DecimalField(max_digits=10, decimal_places=4)
    image_input = models.DecimalField(max_digits=10, decimal_places=4)
    cached_image_input = models.DecimalField(max_digits=10, decimal_places=4)
    image_output = models.DecimalField(max_digits=10, decimal_places=4)
    text_output = models.DecimalField(max_digits=10, decimal_places=4)
    source = models.CharField(max_length=200, blank=True)

    class Tier(models.TextChoices):
        STANDARD = "standard", "Standard (Image API)"
        BATCH = "batch", "Batch API"

    tier = models.CharField(max_length=10, choices=Tier.choices, default=Tier.STANDARD)
    to_check = models.BooleanField(
        default=False,
        help_text="Seeded from a published rule (the Batch API's 50% discount), not read off "
        "the pricing page: an admin should check it there and clear this.",
    )

    objects = PriceSheetQuerySet.as_manager()

    class Meta:
        ordering = ["model", "tier", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "effective_from", "tier"], name="one_sheet_per_start_and_tier"
            )
        ]

    def __str__(self) -> str:
        tier = "" if self.tier == self.Tier.STANDARD else f" ({self.get_tier_display()})"
        return f"{self.model}{tier} from {self.effective_from:%Y-%m-%d}"


SLOT_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
PLACEHOLDER_PATTERN = re.compile(r"\{([a-z][a-z0-9_]{0,39})\}")
LABEL_SEPARATORS = re.compile(r"\s*(?:\n|\|)\s*")
MAX_SLOT_CHARS = 2_000


@dataclass(frozen=True)
class Slot:
    """One named gap in a frame's template, read from the frame's JSON and checked there."""

    name: str
    label: str
    required: bool = True
    help: str = ""
    example: str = ""
    text: bool = False  # words that must appear in the image, drawn as quoted labels

    @classmethod
    def from_json(cls, raw: object) -> Slot:
        if not isinstance(raw, dict):
            raise ValueError("Each slot must be an object with at least a name.")
        name = raw.get("name")
        if not isinstance(name, str) or not SLOT_NAME_PATTERN.match(name):
            raise ValueError(
                f"Slot name {name!r} must start with a letter and use only a-z, 0-9 and _."
            )
        unknown = set(raw) - {"name", "label", "required", "help", "example", "text"}
        if unknown:
            raise ValueError(f"Slot {name} has unknown keys: {', '.join(sorted(unknown))}.")
        return cls(
            name=name,
            label=str(raw.get("label") or name.replace("_", " ").capitalize()),
            required=bool(raw.get("required", True)),
            help=str(raw.get("help", "")),
            example=str(raw.get("example", "")),
            text=bool(raw.get("text", False)),
        )


@dataclass(frozen=True)
class RenderedPrompt:
    prompt: str
    expected_text_labels: list[str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.prompt.encode()).hexdigest()


class SlotErrors(ValueError):
    """Slot values a frame cannot render: {slot name: message}."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _lines(text: str) -> list[str]:
    return [line.strip(" -•\t") for line in text.splitlines() if line.strip(" -•\t")]


def split_labels(value: str) -> list[str]:
    """A text slot may hold several labels, one per line or separated by |."""
    return [label for label in LABEL_SEPARATORS.split(value.strip()) if label]


class FrameContent(models.Model):
    """What a prompt frame says; shared by the editable frame and its frozen versions."""

    class Operation(models.TextChoices):
        GENERATE = "generate", "Generate a new image"
        EDIT = "edit", "Edit an existing image"

    name = models.CharField(max_length=100)
    purpose = models.TextField(blank=True)
    operation = models.CharField(
        max_length=20, choices=Operation.choices, default=Operation.GENERATE
    )
    template = models.TextField(
        help_text="One sentence per line with {slot_name} gaps. A line whose optional slots "
        "are left empty is dropped. Slot values are inserted as plain text, never as template."
    )
    slots = models.JSONField(
        default=list,
        help_text='A list of {"name", "label", "required", "help", "example", "text"}; '
        '"text": true marks words that must appear in the image.',
    )
    fixed_elements = models.TextField(blank=True, help_text="One per line; added to the prompt.")
    avoid = models.TextField(blank=True, help_text="One per line; added to the prompt.")
    checks = models.TextField(blank=True, help_text="One per line: what the reviewer checks.")
    recommended_size = models.CharField(max_length=20, default="1024x1024")
    recommended_quality = models.CharField(max_length=10, default="medium")
    recommended_format = models.CharField(max_length=10, default="png")

    CONTENT_FIELDS = (
        "name",
        "purpose",
        "operation",
        "template",
        "slots",
        "fixed_elements",
        "avoid",
        "checks",
        "recommended_size",
        "recommended_quality",
        "recommended_format",
    )

    class Meta:
        abstract = True

    def slot_list(self) -> list[Slot]:
        return [Slot.from_json(raw) for raw in self.slots]

    def check_list(self) -> list[str]:
        return _lines(self.checks)

    def content(self) -> dict:
        return {field: getattr(self, field) for field in self.CONTENT_FIELDS}

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        try:
            slots = self.slot_list() if isinstance(self.slots, list) else None
            if slots is None:
                raise ValueError("Slots must be a list.")
        except ValueError as problem:
            errors["slots"] = [str(problem)]
            slots = []
        names = [slot.name for slot in slots]
        if len(names) != len(set(names)):
            errors.setdefault("slots", []).append("Slot names must be unique.")
        used = set(PLACEHOLDER_PATTERN.findall(self.template))
        if undefined := ", ".join(sorted(used - set(names))):
            errors["template"] = [f"The template uses slots that are not defined: {undefined}."]
        if unused := ", ".join(sorted(set(names) - used)):
            errors.setdefault("slots", []).append(f"Defined but unused in the template: {unused}.")
        size = imagerules.parse_size(self.recommended_size)
        size_errors = (
            imagerules.size_problems(*size) if size else ["Write the size as WIDTHxHEIGHT."]
        )
        if size_errors:
            errors["recommended_size"] = size_errors
        if self.recommended_quality not in imagerules.QUALITIES:
            errors["recommended_quality"] = [f"One of {', '.join(imagerules.QUALITIES)}."]
        if self.recommended_format not in imagerules.OUTPUT_FORMATS:
            errors["recommended_format"] = [f"One of {', '.join(imagerules.OUTPUT_FORMATS)}."]
        if errors:
            raise ValidationError(errors)

    def render(self, values: dict[str, str]) -> RenderedPrompt:
        """Fill the template with slot values in one pass; raise SlotErrors naming the slots."""
        slots = {slot.name: slot for slot in self.slot_list()}
        cleaned: dict[str, str] = {}
        errors: dict[str, str] = {}
        for name, slot in slots.items():
            value = str(values.get(name) or "").strip()
            if not slot.text:
                value = " ".join(value.split())
            if slot.required and not value:
                errors[name] = f"{slot.label} is required by the {self.name} frame."
            elif len(value) > MAX_SLOT_CHARS:
                errors[name] = f"{slot.label} may be at most {MAX_SLOT_CHARS} characters."
            elif slot.text and '"' in value:
                errors[name] = (
                    f'{slot.label} cannot contain double quotes ("): the studio quotes each '
                    "label itself so the image model draws it exactly."
                )
            cleaned[name] = value
        if errors:
            raise SlotErrors(errors)

        labels: list[str] = []

        def fill(match: re.Match) -> str:
            slot = slots[match.group(1)]
            value = cleaned[slot.name]
            if not slot.text:
                return value
            slot_labels = split_labels(value)
            labels.extend(slot_labels)
            return ", ".join(f'"{label}"' for label in slot_labels)

        lines = []
        for line in self.template.splitlines():
            names = PLACEHOLDER_PATTERN.findall(line)
            if any(not cleaned.get(name) for name in names):
                continue  # an optional slot left empty takes its sentence with it
            # One substitution pass: text inside a value is never read as a placeholder.
            lines.append(PLACEHOLDER_PATTERN.sub(fill, line).strip())
        fixed = _lines(self.fixed_elements)
        if fixed:
            lines.append("Keep these fixed: " + "; ".join(fixed) + ".")
        avoid = _lines(self.avoid)
        if avoid:
            lines.append("Avoid: " + "; ".join(avoid) + ".")
        return RenderedPrompt("\n".join(line for line in lines if line), labels)


class PromptFrameQuerySet(models.QuerySet):
    def active(self) -> PromptFrameQuerySet:
        return self.filter(is_active=True)


class PromptFrame(FrameContent):
    """A reusable frame as admins edit it. Every change is frozen as a new version."""

    key = models.SlugField(max_length=60, unique=True)
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=100)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PromptFrameQuerySet.as_manager()

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        with transaction.atomic():
            super().save(*args, **kwargs)
            latest = self.versions.order_by("-number").first()
            if latest is None or latest.content() != self.content():
                PromptFrameVersion.objects.create(
                    frame=self, number=(latest.number + 1) if latest else 1, **self.content()
                )

    @property
    def current_version(self) -> PromptFrameVersion:
        return self.versions.order_by("-number").first()


class PromptFrameVersion(FrameContent):
    """A frozen frame: requests point here, so editing the frame never rewrites history."""

    frame = models.ForeignKey(PromptFrame, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["frame", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["frame", "number"], name="one_frame_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.number}"


class SubmissionFlood(Exception):
    """More submissions in the last minute than one person should make."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Too many submissions: at most {limit} a minute per person. Wait a moment and "
            "submit again; nothing was queued."
        )

    @classmethod
    def enforce(cls, user) -> None:
        """Raise when the user is over the per-minute limit. Call inside a transaction."""
        from django.contrib.auth import get_user_model

        # Serialize one user's submissions so a burst cannot slip past the count.
        get_user_model().objects.select_for_update().filter(pk=user.pk).exists()
        since = timezone.now() - timedelta(minutes=1)
        # A campaign counts once, however many rows it has (its rows are not counted).
        recent = (
            GenerationRequest.objects.filter(
                created_by=user, created_at__gte=since, campaign__isnull=True
            ).count()
            + apps.get_model("campaigns", "Campaign")
            .objects.filter(owner=user, created_at__gte=since)
            .count()
        )
        if recent >= settings.SUBMISSIONS_PER_MINUTE:
            raise cls(settings.SUBMISSIONS_PER_MINUTE)


class BudgetExceeded(Exception):
    def __init__(self, budget: Budget, spent: Decimal, estimate: Decimal | None) -> None:
        self.budget, self.spent, self.estimate = budget, spent, estimate
        whose = "Your" if budget.scope == Budget.Scope.USER else "The studio's"
        if estimate is None:
            message = (
                f"{whose} monthly budget is {money(budget.monthly_limit)} and this route has no "
                "known price, so the request cannot be checked against it. Choose a priced route."
            )
        else:
            message = (
                f"{whose} monthly budget would be exceeded: spent {money(spent)} of "
                f"{money(budget.monthly_limit)} this month, and this request is estimated at "
                f"{money(estimate)}. Lower the quality, size or number of images, or ask an admin."
            )
        super().__init__(message)


# What a request counts against a budget: its cost once known; else what it may have cost
# (exposure: known costs plus possibly billed attempts' estimates); else, while it waits or
# runs, its estimate. Sandbox requests never count (their costs are simulated).
COMMITTED_SPEND = Coalesce("cost", "exposure", "estimated_cost")


class Budget(models.Model):
    """A monthly spending limit for one user, or (one row) for the whole studio.

    Spend counts real-money routes only: the sandbox's costs are simulated. A request counts
    with its actual cost once known, else with its estimate, from the moment it is queued.
    """

    class Scope(models.TextChoices):
        USER = "user", "One user"
        GLOBAL = "global", "Whole studio"

    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.USER)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
    )
    monthly_limit = models.DecimalField("monthly limit (USD)", max_digits=12, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=Q(scope="user"), name="one_budget_per_user"
            ),
            models.UniqueConstraint(
                fields=["scope"], condition=Q(scope="global"), name="one_global_budget"
            ),
            models.CheckConstraint(
                condition=(Q(scope="user") & Q(user__isnull=False))
                | (Q(scope="global") & Q(user__isnull=True)),
                name="budget_scope_matches_user",
            ),
        ]

    def __str__(self) -> str:
        who = self.user.get_username() if self.user_id else "studio"
        return f"{who}: {money(self.monthly_limit)}/month"

    def spent_this_month(self, now=None) -> Decimal:
        now = now or timezone.now()
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        requests = GenerationRequest.objects.filter(created_at__gte=month_start).exclude(
            route__owner="sandbox"
        )
        if self.scope == self.Scope.USER:
            requests = requests.filter(created_by_id=self.user_id)
        total = requests.aggregate(total=Sum(COMMITTED_SPEND))["total"]
        return total or Decimal(0)

    def remaining(self) -> Decimal:
        return self.monthly_limit - self.spent_this_month()

    @classmethod
    def applying_to(cls, user) -> list[Budget]:
        return list(
            cls.objects.filter(Q(user=user, scope=cls.Scope.USER) | Q(scope=cls.Scope.GLOBAL))
        )

    @classmethod
    def fits(cls, user, request: GenerationRequest, committed: Decimal) -> bool:
        """Whether `request` may commit `committed` in all (another call after a possibly
        billed one, say) within every budget that applies to `user`."""
        if request.route.is_sandbox:
            return True
        counted = request.cost
        if counted is None:
            counted = request.exposure if request.exposure is not None else request.estimated_cost
        for budget in cls.applying_to(user):
            spent = budget.spent_this_month() - (counted or Decimal(0))
            if spent + committed > budget.monthly_limit:
                return False
        return True

    @classmethod
    def enforce(cls, user, estimate: Decimal | None) -> None:
        """Raise BudgetExceeded when the estimate does not fit. Call inside a transaction."""
        # Lock the budget rows so two submissions cannot both spend the last dollars.
        budgets = cls.objects.select_for_update().filter(
            Q(user=user, scope=cls.Scope.USER) | Q(scope=cls.Scope.GLOBAL)
        )
        for budget in budgets:
            spent = budget.spent_this_month()
            if estimate is None or spent + estimate > budget.monthly_limit:
                raise BudgetExceeded(budget, spent, estimate)


# Why a request ended after a worker was lost mid-call; a call that finishes later corrects it.
LOST_CALL_REASONS = ("unknown_outcome", "storage_failed")

# A request's failure_reason in words: an attempt's retry reason, or one of the studio's own.
STUDIO_FAILURE_LABELS = {
    "route_unavailable": "Route unavailable",
    "storage_failed": "Storing the image failed",
    "unknown_outcome": "Outcome unknown (the worker was lost mid-call)",
    "cancelled": "Cancelled",
}


def reason_label(reason: str | None) -> str:
    """The words for a retry or failure reason ("provider_5xx" -> "Provider error (5xx)")."""
    if not reason:
        return ""
    labels = {**dict(Attempt.RetryReason.choices), **STUDIO_FAILURE_LABELS}
    return labels.get(reason, reason.replace("_", " ").capitalize())


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.REFUSED, Status.CANCELLED)


class GenerationRequestQuerySet(models.QuerySet):
    def visible_to(self, user) -> GenerationRequestQuerySet:
        """Designers see their own requests; reviewers and admins see everyone's."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser or user.groups.filter(name__in=["reviewer", "admin"]).exists():
            return self
        return self.filter(created_by=user)

    def newest_first(self) -> GenerationRequestQuerySet:
        return self.order_by("-created_at")

    def matching(self, text: str) -> GenerationRequestQuerySet:
        """Requests whose prompt contains the text (any case), or whose ID is or starts with
        it. The prompt search is served by a trigram index on PostgreSQL (migration 0011);
        an ID prefix becomes a range of the primary key."""
        text = text.strip()
        by_id = Q(pk__in=[])
        digits = text.replace("-", "").lower()
        if 4 <= len(digits) <= 32 and all(c in "0123456789abcdef" for c in digits):
            low, high = digits.ljust(32, "0"), digits.ljust(32, "f")
            by_id = Q(pk__gte=uuid.UUID(low), pk__lte=uuid.UUID(high))
        return self.filter(Q(prompt__icontains=text) | by_id) if text else self

    def with_review_status(self, status: str) -> GenerationRequestQuerySet:
        """Requests with at least one final output in this review status."""
        return self.filter(
            Exists(
                OutputImage.objects.filter(
                    request=OuterRef("pk"), kind=OutputImage.Kind.FINAL, review_status=status
                )
            )
        )

    def keyset_page(
        self,
        size: int,
        older_than: GalleryCursor | None = None,
        newer_than: GalleryCursor | None = None,
    ) -> tuple[list[GenerationRequest], bool]:
        """One page, newest first, after a cursor instead of an OFFSET (and no COUNT): the
        index on (created_by, created_at) answers it at any depth. Returns the page and
        whether more lie beyond it in the direction read."""
        if newer_than is not None:
            rows = list(
                self.filter(created_at__gte=newer_than.created_at)
                .exclude(created_at=newer_than.created_at, pk__lte=newer_than.id)
                .order_by("created_at", "id")[: size + 1]
            )
            return rows[:size][::-1], len(rows) > size
        query = self
        if older_than is not None:
            query = query.filter(created_at__lte=older_than.created_at).exclude(
                created_at=older_than.created_at, pk__gte=older_than.id
            )
        rows = list(query.order_by("-created_at", "-id")[: size + 1])
        return rows[:size], len(rows) > size


@dataclass(frozen=True)
class GalleryCursor:
    """Where a page of requests starts or ends: a creation time and an ID (the tie-break)."""

    created_at: datetime
    id: uuid.UUID

    @classmethod
    def of(cls, generation: GenerationRequest) -> GalleryCursor:
        return cls(generation.created_at, generation.id)

    def __str__(self) -> str:
        stamp = self.created_at.astimezone(UTC)
        micros = (stamp - EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.id.hex}"

    @classmethod
    def parse(cls, raw: str | None) -> GalleryCursor | None:
        """The cursor a link carries; None when it is missing or not one of ours."""
        micros, _, hex_id = (raw or "").partition(".")
        if not (micros.isascii() and micros.isdigit() and len(micros) <= 17):
            return None
        try:
            return cls(EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=hex_id))
        except (ValueError, OverflowError):
            return None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class GenerationRequest(models.Model):
    """One job as asked: the prompt, the settings, the route, and what came of it."""

    class Operation(models.TextChoices):
        GENERATE = "generate", "Generate (Image API)"
        EDIT = "edit", "Edit (Image API)"
        ASSISTANT = "assistant", "Assistant (Responses API)"

    id = models.UUIDField("request ID", primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="generation_requests"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    operation = models.CharField(
        max_length=20, choices=Operation.choices, default=Operation.GENERATE
    )
    prompt = models.TextField()
    prompt_sha256 = models.CharField(max_length=64)
    frame_version = models.ForeignKey(
        "PromptFrameVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="requests",
    )
    slot_values = models.JSONField(default=dict, blank=True)
    expected_text_labels = models.JSONField(default=list, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    quality = models.CharField(max_length=10)
    output_format = models.CharField(max_length=10)
    output_compression = models.PositiveSmallIntegerField(null=True, blank=True)
    background = models.CharField(max_length=20, default="auto")
    n = models.PositiveSmallIntegerField(default=1)
    partial_images = models.PositiveSmallIntegerField(default=0)
    route = models.ForeignKey(Route, on_delete=models.PROTECT, related_name="requests")
    requested_model = models.CharField(max_length=100, default=DEFAULT_MODEL)
    provider_model = models.CharField(max_length=100)
    parent_output = models.ForeignKey(
        "OutputImage", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    estimated_output_tokens = models.PositiveIntegerField(default=0)
    estimated_cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    failure_reason = models.CharField(max_length=40, blank=True)
    failure_message = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # When the cost is not known (an attempt possibly billed, or billed without a price):
    # at most this much may have been spent, known costs plus each unknown one's exposure.
    # Budgets count it as committed spend.
    exposure = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    ledger_note = models.TextField(
        blank=True, help_text="What the studio did to settle this request's calls."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Where and when the next attempt goes, set when a retry is scheduled.
    next_route = models.ForeignKey(
        Route, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    next_route_because = models.CharField(max_length=200, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    # A running row belongs to its worker until then; past it, the sweep resolves it.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Assistant turns: the conversation, the response this turn continues, and the answer.
    conversation = models.ForeignKey(
        "Conversation", null=True, blank=True, on_delete=models.CASCADE, related_name="turns"
    )
    previous_response_id = models.CharField(max_length=200, blank=True)
    response_id = models.CharField(max_length=200, blank=True)
    assistant_text = models.TextField(blank=True)
    # A campaign's row (campaigns app): the row number in its table and its locale. A held
    # row waits for the campaign scheduler to give it a share of the workers.
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="requests",
    )
    campaign_row = models.PositiveIntegerField(null=True, blank=True)
    campaign_locale = models.CharField(max_length=35, blank=True)
    held = models.BooleanField(default=False)

    objects = GenerationRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_by", "-created_at"]),
            # The audit reads today's attempts with these columns of their requests: on
            # PostgreSQL this index answers each lookup alone, so the planner looks up a
            # few thousand requests instead of scanning them all.
            models.Index(
                fields=["id"],
                include=[
                    "route",
                    "created_by",
                    "quality",
                    "width",
                    "height",
                    "status",
                    "cost",
                    "estimated_cost",
                ],
                name="request_audit_idx",
            ),
            # A campaign's rows, newest request per row first (its contact sheet).
            models.Index(
                fields=["campaign", "campaign_row", "-created_at"], name="request_campaign_row_idx"
            ),
            # The campaign scheduler's waiting rows.
            models.Index(
                fields=["created_by", "created_at"],
                condition=Q(held=True),
                name="request_held_idx",
            ),
        ]

    def __str__(self) -> str:
        return str(self.id)

    def get_absolute_url(self) -> str:
        return reverse("studio:request-detail", args=[self.id])

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def latency_ms(self) -> int | None:
        attempt = self.attempts.filter(outcome=Attempt.Outcome.SUCCEEDED).first()
        return attempt.latency_ms if attempt else None

    @classmethod
    def build(
        cls,
        *,
        created_by,
        route: Route,
        prompt: str,
        width: int,
        height: int,
        quality: str,
        output_format: str,
        output_compression: int | None = None,
        background: str = "auto",
        n: int = 1,
        partial_images: int = 0,
        requested_model: str = DEFAULT_MODEL,
        frame_version: PromptFrameVersion | None = None,
        slot_values: dict | None = None,
        expected_text_labels: list[str] | None = None,
        input_sizes: Sequence[tuple[int, int]] = (),
        operation: str = "generate",
        conversation: Conversation | None = None,
        parent_output: OutputImage | None = None,
        price_sheet: PriceSheet | object | None = LOOK_UP,
    ) -> GenerationRequest:
        """The request as it would be recorded (unsaved): labels by the one label rule, the
        model sent, and the estimate. `submit` saves and queues it; a campaign saves many
        of them at once after one budget check for their total."""
        # Whatever path built the request, its labels follow the one rule: what the prompt
        # quotes is always expected, so no route to an image skips text inspection.
        expected_text_labels = imagerules.expected_labels(prompt, expected_text_labels or [])
        estimate = route.estimate(
            prompt=prompt,
            width=width,
            height=height,
            quality=quality,
            n=n,
            partial_images=partial_images,
            requested_model=requested_model,
            input_images=input_sizes,
            price_sheet=price_sheet,
        )
        return cls(
            created_by=created_by,
            route=route,
            operation=operation,
            conversation=conversation,
            previous_response_id=conversation.last_response_id if conversation else "",
            parent_output=parent_output,
            prompt=prompt,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(),
            frame_version=frame_version,
            slot_values=slot_values or {},
            expected_text_labels=expected_text_labels,
            width=width,
            height=height,
            quality=quality,
            output_format=output_format,
            output_compression=output_compression,
            background=background,
            n=n,
            partial_images=partial_images,
            requested_model=requested_model,
            provider_model=route.model_sent_for(requested_model),
            estimated_output_tokens=estimate.output_tokens,
            estimated_cost=estimate.cost,
        )

    @classmethod
    def submit(
        cls,
        *,
        created_by,
        route: Route,
        prompt: str,
        width: int,
        height: int,
        quality: str,
        output_format: str,
        output_compression: int | None = None,
        background: str = "auto",
        n: int = 1,
        partial_images: int = 0,
        requested_model: str = DEFAULT_MODEL,
        frame_version: PromptFrameVersion | None = None,
        slot_values: dict | None = None,
        expected_text_labels: list[str] | None = None,
        inputs: Sequence[CheckedImage] = (),
        parent_output: OutputImage | None = None,
        conversation: Conversation | None = None,
    ) -> GenerationRequest:
        """Record a request with its estimate and queue it once the transaction commits.

        With `inputs` (a source, references and perhaps a mask, checked by studio.uploads)
        it is an edit: they are stored under inputs/<request-id>/ with the row, and if
        anything fails their files are deleted with it. Raises BudgetExceeded, leaving
        nothing behind, when the estimate does not fit in what is left of the user's or the
        studio's monthly budget.
        """
        images = [item for item in inputs if item.role != InputImage.Role.MASK]
        request = cls.build(
            created_by=created_by,
            route=route,
            prompt=prompt,
            width=width,
            height=height,
            quality=quality,
            output_format=output_format,
            output_compression=output_compression,
            background=background,
            n=n,
            partial_images=partial_images,
            requested_model=requested_model,
            frame_version=frame_version,
            slot_values=slot_values,
            expected_text_labels=expected_text_labels,
            input_sizes=[(item.width, item.height) for item in images],
            operation=cls._operation_for(inputs, conversation),
            conversation=conversation,
            parent_output=parent_output,
        )
        stored: list[str] = []
        try:
            with transaction.atomic():
                SubmissionFlood.enforce(created_by)
                if not route.is_sandbox:
                    Budget.enforce(created_by, request.estimated_cost)
                request.save(force_insert=True)
                for position, checked in enumerate(inputs):
                    stored.append(InputImage.store(request, position, checked).file.name)
                transaction.on_commit(request.enqueue)
        except BaseException:
            # The rows roll back with the transaction; files in storage do not.
            for name in stored:
                default_storage.delete(name)
            raise
        return request

    @classmethod
    def _operation_for(cls, inputs, conversation) -> str:
        if conversation is not None:
            return cls.Operation.ASSISTANT
        return cls.Operation.EDIT if inputs else cls.Operation.GENERATE

    def resubmit(self, created_by) -> GenerationRequest:
        """Run the same prompt and settings again as a new request."""
        return GenerationRequest.submit(
            created_by=created_by,
            route=self.route,
            prompt=self.prompt,
            requested_model=self.requested_model,
            frame_version=self.frame_version,
            slot_values=self.slot_values,
            expected_text_labels=self.expected_text_labels,
            inputs=[item.checked() for item in self.inputs.all()],
            parent_output=self.parent_output,
            **self.image_settings(),
        )

    def image_settings(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "quality": self.quality,
            "output_format": self.output_format,
            "output_compression": self.output_compression,
            "background": self.background,
            "n": self.n,
            "partial_images": self.partial_images,
        }

    def enqueue(self, countdown: float = 0) -> None:
        """Send the id to the workers. If the broker is down the row stays queued and the
        sweep sends it again later: the row, not the broker, is the record."""
        from studio.tasks import run_generation

        try:
            run_generation.apply_async(args=[str(self.id)], countdown=countdown or None)
        except Exception:
            log.exception("request %s: could not reach the broker; the sweep will retry", self.id)

    def claim(self) -> bool:
        """Move queued -> running; False when another delivery already took the row."""
        now = timezone.now()
        route = self.next_route or self.route
        lease = now + timedelta(seconds=route.timeout_seconds + settings.LEASE_GRACE_SECONDS)
        # A delivery that arrives before a scheduled retry is due (a duplicate sent by the
        # sweep, say) does nothing; the scheduled one follows. One second allows for clocks.
        due = Q(retry_at__isnull=True) | Q(retry_at__lte=now + timedelta(seconds=1))
        claimed = GenerationRequest.objects.filter(
            due, pk=self.pk, status=Status.QUEUED, held=False
        ).update(
            status=Status.RUNNING,
            started_at=Coalesce("started_at", Value(now)),
            lease_expires_at=lease,
            retry_at=None,
        )
        if not claimed:
            self.refresh_from_db()
            return False
        # What the update wrote, without reading the row again (one statement fewer on
        # every call, and the route stays loaded).
        self.status = Status.RUNNING
        self.started_at = self.started_at or now
        self.lease_expires_at = lease
        self.retry_at = None
        return True

    def _finish(
        self, status: str, reason: str = "", message: str = "", *, from_status=Status.RUNNING
    ) -> bool:
        """End a running request; False (and nothing written) if it is no longer running."""
        cost, exposure = self.cost_and_exposure()
        ended = GenerationRequest.objects.filter(pk=self.pk, status=from_status).update(
            status=status,
            failure_reason=reason,
            failure_message=message,
            finished_at=timezone.now(),
            cost=cost,
            exposure=exposure,
            lease_expires_at=None,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )
        self.refresh_from_db()
        if ended:
            request_ended.send_robust(sender=GenerationRequest, request=self)
        return bool(ended)

    def total_attempt_cost(self) -> Decimal | None:
        """What every attempt cost together; None (unpriced) if any attempt's price is unknown."""
        return self.cost_and_exposure()[0]

    def cost_and_exposure(self) -> tuple[Decimal | None, Decimal | None]:
        """(cost, exposure) of the attempts so far: the cost when every attempt's is known,
        else None and the most that may have been spent (known costs plus exposures; None
        when an unknown cost has no exposure either, e.g. an unpriced route)."""
        rows = list(self.attempts.values_list("cost", "exposure", "outcome"))
        if all(cost is not None for cost, _, _ in rows):
            return sum((cost for cost, _, _ in rows), Decimal(0)), None
        total = Decimal(0)
        for cost, exposure, outcome in rows:
            if outcome == Attempt.Outcome.CALLING:
                exposure = self.exposure_base  # still out: it may cost up to the estimate
            if cost is not None:
                total += cost
            elif exposure is not None:
                total += exposure
            else:
                return None, None
        return None, total

    @property
    def cost_basis(self) -> str:
        """The request's billing in one word, for its page: possibly billed when any attempt
        may have been billed; not billed when no attempt was; unpriced when a billed
        attempt has no price; "" when its cost is known (or nothing was called yet)."""
        bases = set(self.attempts.values_list("cost_basis", flat=True))
        if Attempt.CostBasis.POSSIBLY_BILLED in bases:
            return Attempt.CostBasis.POSSIBLY_BILLED
        if bases == {Attempt.CostBasis.NOT_BILLED}:
            return Attempt.CostBasis.NOT_BILLED
        if self.cost is None and Attempt.CostBasis.UNPRICED in bases:
            return Attempt.CostBasis.UNPRICED
        return ""

    @property
    def exposure_base(self) -> Decimal | None:
        """What one call of this request may cost at most, as far as the studio knows: its
        estimate (images, previews, prompt and input images; a flat price times n)."""
        return self.estimated_cost

    def may_have_been_billed(self) -> bool:
        """True once any attempt may have cost money (billed, possibly billed, or still in
        flight): from then on the request is never sent again automatically."""
        return any(
            billing.may_have_billed(basis)
            for basis in self.attempts.values_list("cost_basis", flat=True)
        )

    def succeed(self, attempt: Attempt) -> bool:
        self.input_tokens = (
            attempt.input_text_tokens + attempt.input_image_tokens + attempt.mainline_input_tokens
        )
        self.output_tokens = (
            attempt.output_image_tokens
            + attempt.output_text_tokens
            + attempt.mainline_output_tokens
        )
        return self._finish(Status.SUCCEEDED)

    def fail(self, reason: str, message: str) -> bool:
        return self._finish(Status.FAILED, reason, message)

    @property
    def was_given_up(self) -> bool:
        """Ended by the sweep as lost while its call may still have been out."""
        return self.status == Status.FAILED and self.failure_reason in LOST_CALL_REASONS

    def correct_given_up(self, status: str, reason: str = "", message: str = "") -> bool:
        """Replace the sweep's lost-call ending with what the call really did (it came back
        after all); False when the request was not given up."""
        self.refresh_from_db(fields=["status", "failure_reason"])
        if not self.was_given_up:
            return False
        return self._finish(status, reason, message, from_status=Status.FAILED)

    def refuse(self, message: str) -> bool:
        return self._finish(Status.REFUSED, "policy", message)

    def is_still_running(self) -> bool:
        return GenerationRequest.objects.filter(pk=self.pk, status=Status.RUNNING).exists()

    def extend_lease(self, route: Route) -> bool:
        """Keep the row with its worker while the call shows signs of life."""
        lease = timezone.now() + timedelta(
            seconds=route.timeout_seconds + settings.LEASE_GRACE_SECONDS
        )
        return bool(
            GenerationRequest.objects.filter(pk=self.pk, status=Status.RUNNING).update(
                lease_expires_at=lease
            )
        )

    def schedule_retry(self, route: Route, delay: float, because: str) -> bool:
        """Hand the row back to the queue for another attempt, on this or another route.
        While it waits, budgets count what its attempts may already have cost."""
        _, exposure = self.cost_and_exposure()
        queued = GenerationRequest.objects.filter(pk=self.pk, status=Status.RUNNING).update(
            exposure=None if exposure is None else exposure + (self.estimated_cost or 0),
            status=Status.QUEUED,
            next_route=route,
            next_route_because=because,
            retry_at=timezone.now() + timedelta(seconds=delay),
            lease_expires_at=None,
        )
        if queued:
            transaction.on_commit(lambda: self.enqueue(countdown=delay))
        self.refresh_from_db()
        return bool(queued)

    def cancel(self, by) -> bool:
        """Stop a queued or running request. A call in flight still finishes and is billed;
        its result is discarded and its cost recorded."""
        cost, exposure = self.cost_and_exposure()
        cancelled = GenerationRequest.objects.filter(
            pk=self.pk, status__in=[Status.QUEUED, Status.RUNNING]
        ).update(
            cost=cost,
            exposure=exposure,
            status=Status.CANCELLED,
            failure_reason="cancelled",
            failure_message=f"Cancelled by {by.get_username()}.",
            finished_at=timezone.now(),
            retry_at=None,
            lease_expires_at=None,
        )
        self.refresh_from_db()
        if cancelled:
            request_ended.send_robust(sender=GenerationRequest, request=self)
        return bool(cancelled)

    def resolve_stuck(self) -> str:
        """Settle a running row whose worker vanished (crash, kill, lost connection).

        A call whose worker kept a receipt in storage delivered: the request is finished
        from what was received. A call in flight without one may have been generated and
        billed: it is marked unknown and the request ends. A request goes back to the queue
        only when none of its attempts may have been billed, so nothing is paid twice
        behind anyone's back.
        """
        with transaction.atomic():
            row = (
                GenerationRequest.objects.select_for_update()
                .filter(pk=self.pk, status=Status.RUNNING, lease_expires_at__lt=timezone.now())
                .first()
            )
            if row is None:
                return "not stuck"
            if row.finish_from_receipts():
                self.refresh_from_db()
                return "finished"
            in_flight = list(row.attempts.filter(outcome=Attempt.Outcome.CALLING))
            for attempt in in_flight:
                attempt.mark_unknown()
            if row.may_have_been_billed():
                row.fail(*row.lost_call_explanation())
                self.refresh_from_db()
                return "failed"
            GenerationRequest.objects.filter(pk=row.pk).update(
                status=Status.QUEUED, lease_expires_at=None
            )
            transaction.on_commit(row.enqueue)
        self.refresh_from_db()
        return "requeued"

    def recount_cost(self) -> None:
        """Write the cost (or exposure) of an ended request again from its attempts, after
        one of them was settled late (an abandoned call marked unknown)."""
        cost, exposure = self.cost_and_exposure()
        GenerationRequest.objects.filter(pk=self.pk, status__in=TERMINAL_STATUSES).update(
            cost=cost, exposure=exposure
        )
        self.refresh_from_db()

    def lost_call_explanation(self) -> tuple[str, str]:
        """(reason, message) for a request whose worker stopped after a call that may have
        been billed: what happened, what it may have cost, and that it was not sent again."""
        _, exposure = self.cost_and_exposure()
        cost = f" It may have cost up to {money(exposure)}." if exposure is not None else ""
        if self.attempts.filter(outcome=Attempt.Outcome.SUCCEEDED).exists():
            return (
                "storage_failed",
                "The provider generated and billed the images, but the worker stopped before "
                f"they were stored, and they are lost.{cost} The request was not sent again, so "
                "nothing is paid twice; run it again if you still need it.",
            )
        return (
            "unknown_outcome",
            "The worker stopped while the provider was generating this request; the provider "
            f"may have produced and billed it.{cost} It was not sent again, so nothing is paid "
            "twice. Run it again if you still need it.",
        )

    def add_ledger_note(self, note: str) -> None:
        """Say, on the request, what the studio did to settle its ledger (shown on its page)."""
        GenerationRequest.objects.filter(pk=self.pk).update(
            ledger_note=Concat("ledger_note", Value(note + " "))
        )
        self.refresh_from_db(fields=["ledger_note"])

    def finish_from_receipts(self, note: str = "") -> bool:
        """Finish a request from the payload a worker kept in storage after a paid call
        (studio.models.keep_payload): the attempt is recorded from the receipt, the stored
        images get their rows and the request succeeds. True when a receipt was found."""
        if self.outputs.filter(kind=OutputImage.Kind.FINAL).exists():
            return False
        for attempt in self.attempts.exclude(outcome=Attempt.Outcome.FAILED).order_by("-number"):
            receipt = read_receipt(self.id, attempt.number)
            if receipt is None:
                continue
            record_kept_call(
                self,
                attempt,
                receipt,
                note=note
                or "Its worker stopped after the call; the request was finished from the images "
                "and receipt it had stored.",
            )
            return True
        return False

    def route_for_next_attempt(self) -> tuple[Route, str]:
        if self.next_route_id:
            return self.next_route, self.next_route_because
        return self.route, ""

    def record_discarded_call(self) -> None:
        """A call that finished after the request was cancelled: keep its cost on the row."""
        cost, exposure = self.cost_and_exposure()
        GenerationRequest.objects.filter(pk=self.pk, status=Status.CANCELLED).update(
            cost=cost,
            exposure=exposure,
            failure_message=Concat(
                "failure_message",
                Value(
                    " The call already in flight finished and was billed; its result was discarded."
                ),
            ),
        )
        self.refresh_from_db()

    @property
    def elapsed_seconds(self) -> int:
        end = self.finished_at or timezone.now()
        return max(0, int((end - self.created_at).total_seconds()))

    @property
    def retry_in_seconds(self) -> int | None:
        if self.retry_at is None:
            return None
        return max(0, int((self.retry_at - timezone.now()).total_seconds()))

    @property
    def attempt_count(self) -> int:
        return self.attempts.count()

    @property
    def last_failed_attempt(self) -> Attempt | None:
        return self.attempts.filter(outcome=Attempt.Outcome.FAILED).order_by("-number").first()

    @property
    def is_edit(self) -> bool:
        return self.operation == self.Operation.EDIT

    @property
    def is_assistant_turn(self) -> bool:
        return self.operation == self.Operation.ASSISTANT

    def record_reply(self, text: str, response_id: str) -> None:
        """Keep the assistant's answer and its response id; the conversation continues from it."""
        with transaction.atomic():
            self.assistant_text, self.response_id = text, response_id
            self.save(update_fields=["assistant_text", "response_id"])
            if self.conversation_id:
                Conversation.objects.filter(pk=self.conversation_id).update(
                    last_response_id=response_id
                )

    @property
    def has_mask(self) -> bool:
        return self.is_edit and self.inputs.filter(role=InputImage.Role.MASK).exists()

    @property
    def source_input(self) -> InputImage | None:
        return self.inputs.filter(role=InputImage.Role.SOURCE).first()

    @property
    def mask_input(self) -> InputImage | None:
        return self.inputs.filter(role=InputImage.Role.MASK).first()

    @property
    def reference_inputs(self) -> models.QuerySet[InputImage]:
        return self.inputs.filter(role=InputImage.Role.REFERENCE)

    def edits_of_outputs(self) -> GenerationRequestQuerySet:
        """Edit requests made from this request's outputs: the lineage's next generation."""
        return GenerationRequest.objects.filter(parent_output__request=self).select_related(
            "parent_output"
        )

    def request_shape(self) -> dict:
        """What the seeds call request_shape: enough to reproduce cost and latency spikes."""
        return {
            "prompt_sha256": self.prompt_sha256,
            "input_image_count": (
                self.inputs.exclude(role=InputImage.Role.MASK).count() if self.is_edit else 0
            ),
            "mask": self.has_mask,
            "size": self.size,
            "quality": self.quality,
            "output_format": self.output_format,
            "output_compression": self.output_compression,
            "background": self.background,
            "n": self.n,
            "partial_images": self.partial_images,
        }


class Attempt(models.Model):
    """One call to a provider: the unit that is billed, timed and logged."""

    class Outcome(models.TextChoices):
        CALLING = "calling", "Calling"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown outcome (possibly billed)"

    class RetryReason(models.TextChoices):
        # Labels spelled out: TextChoices would title-case the names ("Provider 5Xx").
        TIMEOUT = "timeout", "Timed out"
        RATE_LIMIT = "rate_limit", "Rate limited (429)"
        PROVIDER_5XX = "provider_5xx", "Provider error (5xx)"
        CONNECTION = "connection", "Connection failed"
        POLICY = "policy", "Refused by the content policy"
        VALIDATION = "validation", "Request refused as invalid"
        SIZE = "size", "Size refused"
        INVALID_OUTPUT = "invalid_output", "Unusable image returned"
        UNKNOWN = "unknown", "Unknown error"

    class CostBasis(models.TextChoices):
        # The values are studio.billing.Basis; each stands for one billing state.
        TOKENS = "tokens", "Tokens x price sheet"
        PER_CALL = "per_call", "Route price per call"
        UNPRICED = "unpriced", "Billed, unpriced"
        NOT_BILLED = "not_billed", "Not billed (error answer)"
        POSSIBLY_BILLED = "possibly_billed", "Possibly billed"

    request = models.ForeignKey(
        GenerationRequest, on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveSmallIntegerField()
    route = models.ForeignKey(Route, on_delete=models.PROTECT, related_name="attempts")
    route_owner = models.CharField(max_length=100)
    routed_because = models.CharField(
        max_length=200, blank=True, help_text="Why this attempt went to this route (fallback)."
    )
    model_requested = models.CharField(max_length=100)
    model_sent = models.CharField(max_length=100)
    request_shape = models.JSONField(default=dict)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.CALLING)
    provider_request_id = models.CharField(max_length=200, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    retry_reason = models.CharField(max_length=20, choices=RetryReason.choices, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    input_text_tokens = models.PositiveIntegerField(default=0)
    input_image_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(default=0)
    output_image_tokens = models.PositiveIntegerField(default=0)
    output_text_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cost_basis = models.CharField(max_length=20, choices=CostBasis.choices, blank=True)
    price_sheet = models.ForeignKey(PriceSheet, null=True, blank=True, on_delete=models.PROTECT)
    # Assistant turns: the mainline model's own tokens, and the image tool's part of the cost.
    mainline_model = models.CharField(max_length=100, blank=True)
    mainline_input_tokens = models.PositiveIntegerField(default=0)
    mainline_output_tokens = models.PositiveIntegerField(default=0)
    image_tool_cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    mainline_cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # Billing (studio.billing): when the cost is unknown, at most this much may have been
    # spent (the request's estimate); what the provider reported, and why it is unpriced.
    exposure = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    usage_shape = models.CharField(max_length=20, blank=True)
    raw_usage = models.JSONField(null=True, blank=True)
    billing_note = models.TextField(blank=True)

    class Meta:
        ordering = ["request", "number"]
        constraints = [
            models.UniqueConstraint(fields=["request", "number"], name="one_attempt_number"),
            models.CheckConstraint(
                condition=Q(cost__isnull=True) | Q(cost__gte=Decimal(0)), name="cost_not_negative"
            ),
        ]
        indexes = [
            # The audit reads a date range of attempts and only these columns: PostgreSQL
            # answers its aggregates and the newest-first list from this index alone.
            models.Index(
                fields=[
                    "started_at",
                    "route",
                    "route_owner",
                    "cost_basis",
                    "outcome",
                    "retry_reason",
                    "model_requested",
                    "model_sent",
                    "number",
                    "cost",
                    "latency_ms",
                    "request",
                ],
                name="attempt_audit_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} #{self.number}"

    @classmethod
    def begin(cls, request: GenerationRequest, route: Route, routed_because: str = "") -> Attempt:
        number = request.attempts.count() + 1
        return cls.objects.create(
            request=request,
            number=number,
            route=route,
            route_owner=route.owner,
            routed_because=routed_because,
            model_requested=request.requested_model,
            model_sent=route.model_sent_for(request.requested_model),
            request_shape=request.request_shape(),
        )

    @classmethod
    def begin_call(
        cls, request: GenerationRequest, route: Route, routed_because: str = ""
    ) -> Attempt | None:
        """The attempt of a call about to be sent, only while the request is still running
        (a cancel or a sweep since the claim wins): None means send nothing."""
        with transaction.atomic():
            running = (
                GenerationRequest.objects.select_for_update()
                .filter(pk=request.pk, status=Status.RUNNING)
                .exists()
            )
            return cls.begin(request, route, routed_because) if running else None

    def _close(self, started_monotonic: float, ended_monotonic: float) -> None:
        self.finished_at = timezone.now()
        self.latency_ms = max(0, round((ended_monotonic - started_monotonic) * 1000))

    def record_success(
        self,
        *,
        usage: pricing.UsageReading | pricing.Usage | None,
        provider_request_id: str,
        http_status: int,
        started: float,
        ended: float,
        images: int = 1,
        answer: billing.Answer = billing.Answer.COMPLETE,
        tier: str = "standard",
    ) -> None:
        """A 200 that delivered images (`answer` INCOMPLETE when it broke after some). Billed
        when its usage (or the route's flat price) is known; possibly billed when the usage
        is missing, zero or unreadable."""
        self._close(started, ended)
        self.outcome = self.Outcome.SUCCEEDED
        self.retry_reason = ""
        self.provider_request_id = provider_request_id
        self.http_status = http_status
        self.settle(answer, _reading(usage), images=images, tier=tier)
        self.save()

    def record_failure(
        self,
        *,
        reason: str,
        http_status: int | None,
        error_code: str,
        message: str,
        provider_request_id: str,
        started: float,
        ended: float,
        answer: billing.Answer | None = None,
        usage: pricing.UsageReading | pricing.Usage | None = None,
    ) -> None:
        """A call that produced no usable images. `answer` says how far it got (an error
        answer by default when there is an HTTP status, else no answer at all)."""
        if answer is None:
            answer = billing.Answer.ERROR if http_status else billing.Answer.NO_ANSWER
        self._close(started, ended)
        self.outcome = self.Outcome.FAILED
        self.retry_reason = reason
        self.http_status = http_status
        self.error_code = error_code
        self.error_message = message
        self.provider_request_id = provider_request_id
        self.settle(answer, _reading(usage), images=0)
        self.save()

    def mark_unknown(self, note: str = "") -> bool:
        """Record that the worker stopped during this call. Only while the call is still
        in flight: a result its worker recorded meanwhile is kept. True if marked."""
        bill = billing.decide(
            billing.Answer.NO_ANSWER, usage=None, images=0, exposure=self.request.exposure_base
        )
        values = {
            "outcome": self.Outcome.UNKNOWN,
            "retry_reason": self.RetryReason.UNKNOWN,
            "error_message": note
            or (
                "The worker stopped during this call; the provider may have generated and "
                "billed it."
            ),
            "finished_at": timezone.now(),
            "cost": None,
            "cost_basis": bill.basis,
            "exposure": bill.exposure,
            "billing_note": bill.note,
        }
        marked = Attempt.objects.filter(pk=self.pk, outcome=self.Outcome.CALLING).update(**values)
        self.refresh_from_db()
        return bool(marked)

    def record_mainline(self, model: str, usage: pricing.UsageReading | pricing.Usage | None):
        """An assistant turn: the image tool was priced from its usage (self.cost); add the
        mainline model's tokens, named by the model the response says answered. Without a
        price sheet for that model its tokens are unpriced (never 0), the tool's part stays
        in image_tool_cost and the attempt's cost is unknown, with the tool's cost plus the
        estimate as its exposure."""
        reading = _reading(usage)
        mainline = reading.usage if reading is not None and reading.priceable else None
        self.mainline_model = model
        self.mainline_input_tokens = mainline.input_tokens if mainline else 0
        self.mainline_output_tokens = mainline.output_tokens if mainline else 0
        self.image_tool_cost = self.cost if self.cost_basis == self.CostBasis.TOKENS else None
        model = model or self.route.assistant_model
        # A response names a dated snapshot ("gpt-5.4-2026-03-05"); a sheet for the route's
        # model ("gpt-5.4") prices it when there is none for the snapshot.
        sheet = PriceSheet.objects.in_force(model, self.started_at) or PriceSheet.objects.in_force(
            self.route.assistant_model, self.started_at
        )
        self.mainline_cost = (
            pricing.cost_of_usage(mainline, sheet) if mainline and sheet is not None else None
        )
        if self.image_tool_cost is not None and self.mainline_cost is not None:
            self.cost = self.image_tool_cost + self.mainline_cost
        elif billing.billing_of(self.cost_basis) is billing.Billing.BILLED:
            self.cost, self.cost_basis = None, self.CostBasis.UNPRICED
            self.exposure = (self.image_tool_cost or Decimal(0)) + (
                self.request.exposure_base or Decimal(0)
            )
            if sheet is None:
                self.billing_note = f"No price sheet for {model}: its tokens are unpriced."
            elif mainline is None:
                self.billing_note = f"{model} reported no usable usage: its tokens are unpriced."
        self.save(
            update_fields=[
                "mainline_model",
                "mainline_input_tokens",
                "mainline_output_tokens",
                "image_tool_cost",
                "mainline_cost",
                "cost",
                "cost_basis",
                "exposure",
                "billing_note",
            ]
        )

    def record_usage(self, usage: pricing.Usage) -> None:
        """Every token class the provider reported, so the ledger shows what was priced."""
        self.input_text_tokens = usage.input_text_tokens
        self.input_image_tokens = usage.input_image_tokens
        self.cached_input_tokens = usage.cached_text_tokens + usage.cached_image_tokens
        self.output_image_tokens = usage.output_image_tokens
        self.output_text_tokens = usage.output_text_tokens

    def settle(
        self,
        answer: billing.Answer,
        usage: pricing.UsageReading | None,
        images: int,
        tier: str = "standard",
    ) -> None:
        """Decide this attempt's billing state and cost (studio.billing) and keep what the
        provider reported. The price sheet is the one in force (in the tier the call was
        sent in: standard, or batch) for the model the provider ran, else for the model
        requested."""
        per_call = self.route.pricing_mode == Route.PricingMode.PER_CALL
        sheet = None
        if not per_call:
            sheet = PriceSheet.objects.in_force(
                self.model_sent, self.started_at, tier
            ) or PriceSheet.objects.in_force(self.model_requested, self.started_at, tier)
        bill = billing.decide(
            answer,
            usage=usage,
            images=images,
            exposure=self.request.exposure_base,
            price_per_call=self.route.price_per_call,
            per_call=per_call,
            sheet=sheet,
        )
        if usage is not None:
            self.usage_shape, self.raw_usage = usage.shape, usage.raw
            if usage.usage is not None:
                self.record_usage(usage.usage)
        self.cost, self.cost_basis, self.exposure = bill.cost, bill.basis, bill.exposure
        self.price_sheet = bill.price_sheet
        self.billing_note = bill.note

    @property
    def billing(self) -> billing.Billing | None:
        """Not billed, billed or possibly billed; None while the call is in flight."""
        return billing.billing_of(self.cost_basis)

    @property
    def billing_label(self) -> str:
        state = self.billing
        return billing.BILLING_LABELS[state] if state else "in flight"


def _reading(usage) -> pricing.UsageReading | None:
    """Accept a bare Usage (tests, hand-made rows) where a provider's reading is expected."""
    if usage is None or isinstance(usage, pricing.UsageReading):
        return usage
    return pricing.UsageReading(usage, "image_api")


def output_upload_to(instance: OutputImage | None, filename: str, request_id=None) -> str:
    return f"outputs/{request_id or instance.request_id}/{filename}"


class ReviewStatus(models.TextChoices):
    AWAITING = "awaiting", "Awaiting review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"


class StoredImage:
    """What an output and an input share: a file in storage in one of the allowed formats."""

    def __str__(self) -> str:
        return self.file.name

    @property
    def content_type(self) -> str:
        return imagerules.MIME_BY_FORMAT.get(self.format, "application/octet-stream")

    def read(self) -> bytes:
        with self.file.open("rb") as handle:
            return handle.read()

    @property
    def extension(self) -> str:
        return "jpg" if self.format == "jpeg" else self.format

    def download_stem(self, request: GenerationRequest) -> str:
        """`<frame>-<request id>`: the frame's key, or the operation for a free prompt."""
        version = request.frame_version
        return f"{version.frame.key if version else request.operation}-{request.id}"


class OutputImage(StoredImage, models.Model):
    """A stored image: decoded, checked with Pillow, hashed, saved through the storage API."""

    class Kind(models.TextChoices):
        FINAL = "final", "Final image"
        PARTIAL = "partial", "Partial preview"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    request = models.ForeignKey(GenerationRequest, on_delete=models.CASCADE, related_name="outputs")
    attempt = models.ForeignKey(Attempt, on_delete=models.PROTECT, related_name="outputs")
    index = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FINAL)
    file = models.FileField(upload_to=output_upload_to, max_length=300)
    sha256 = models.CharField(max_length=64)
    bytes = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    public_url = models.URLField(max_length=1000, blank=True)
    delete_after = models.DateField(null=True, blank=True)
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention deleted the file; the row stays."
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Kept in step with the latest review.Decision, in the same transaction.
    review_status = models.CharField(
        max_length=20, choices=ReviewStatus.choices, default=ReviewStatus.AWAITING, db_index=True
    )
    text_mismatch = models.BooleanField(
        default=False, help_text="A text inspection found a label wrong or missing."
    )
    drift_ratio = models.FloatField(
        null=True, blank=True, help_text="Share of protected pixels an edit changed."
    )
    drift_flagged = models.BooleanField(default=False)

    class Meta:
        ordering = ["request", "kind", "index"]
        constraints = [
            models.UniqueConstraint(fields=["request", "kind", "index"], name="one_output_per_slot")
        ]

    def get_absolute_url(self) -> str:
        return reverse("studio:output-file", args=[self.id])

    @property
    def download_name(self) -> str:
        """`<frame>-<request id>-<n>.<ext>`, n counting from 1; previews say so."""
        preview = "preview-" if self.kind == self.Kind.PARTIAL else ""
        return f"{self.download_stem(self.request)}-{preview}{self.index + 1}.{self.extension}"

    @property
    def drift_percent(self) -> float | None:
        return None if self.drift_ratio is None else 100 * self.drift_ratio

    def record_drift(self, ratio: float | None) -> None:
        """Keep how much of the protected area an edit changed; above the threshold the
        output is flagged for the reviewer (the route may have ignored the mask)."""
        from studio.drift import DRIFT_THRESHOLD

        self.drift_ratio = ratio
        self.drift_flagged = ratio is not None and ratio > DRIFT_THRESHOLD
        self.save(update_fields=["drift_ratio", "drift_flagged"])


def output_file_name(request_id, index: int, image, kind: str = OutputImage.Kind.FINAL) -> str:
    extension = "jpg" if image.format == "jpeg" else image.format
    prefix = "partial-" if kind == OutputImage.Kind.PARTIAL else ""
    return output_upload_to(
        None, f"{prefix}{index:02d}-{image.sha256[:16]}.{extension}", request_id=request_id
    )


def store_output(
    request: GenerationRequest,
    attempt: Attempt,
    index: int,
    image,
    kind: str = OutputImage.Kind.FINAL,
    name: str | None = None,
) -> OutputImage:
    """Record one verified image under outputs/<request-id>/, saving its file unless it is
    already in storage under `name` (a payload kept before the rows were written)."""
    output = OutputImage(
        request=request,
        attempt=attempt,
        index=index,
        kind=kind,
        sha256=image.sha256,
        bytes=image.bytes if hasattr(image, "bytes") else len(image.data),
        width=image.width,
        height=image.height,
        format=image.format,
        delete_after=(timezone.now() + timedelta(days=request.route.retention())).date(),
    )
    if name is None:
        output.file.save(
            output_file_name(request.id, index, image, kind).rsplit("/", 1)[-1],
            ContentFile(image.data),
            save=False,
        )
    else:
        output.file.name = name
    output.public_url = output.file.url
    output.save()
    return output


# --- What a paid call delivered, kept before any row is written -------------------------------


def receipt_name(request_id, attempt_number: int) -> str:
    return f"outputs/{request_id}/receipt-{attempt_number:02d}.json"


@dataclass(frozen=True)
class KeptImage:
    """An image already in storage, as a receipt lists it."""

    name: str
    sha256: str
    bytes: int
    width: int
    height: int
    format: str


def call_receipt(
    request: GenerationRequest, result, latency_ms: int, kept=(), tier: str = "standard"
) -> dict:
    """What a worker knows of a call the provider answered: status, request ID, latency, the
    usage as read (studio.pricing.reading_to_json), what went missing, the files kept and,
    for an assistant turn, its reply. The same dict is kept in storage (keep_payload) and
    handed to record_kept_call."""
    receipt = {
        "request_id": str(request.id),
        "provider_request_id": result.provider_request_id,
        "http_status": result.http_status,
        "latency_ms": latency_ms,
        "answer": str(result.answer),
        "note": result.note,
        "usage": pricing.reading_to_json(result.usage),
        "image_count": len(result.images),
        "images": [kept_image.__dict__ for kept_image in kept],
        "tier": tier,  # the price tier it was sent in: standard, or batch
    }
    if request.is_assistant_turn:
        receipt["assistant"] = {
            "text": result.text,
            "response_id": result.response_id,
            "mainline_model": result.mainline_model,
            "mainline_usage": pricing.reading_to_json(result.mainline_usage),
        }
    return receipt


def keep_payload(
    request: GenerationRequest, attempt: Attempt, result, latency_ms: int, tier: str = "standard"
) -> dict:
    """Save a paid call's images and its receipt to storage before any database row is
    written (or read), so a worker that dies, or loses its database, after a billed call
    leaves what the sweep needs to finish the request from what was received instead of
    calling again. Storage is tried a few times; on failure nothing is left behind (no file
    without its row) and the last error is raised."""
    kept: list[KeptImage] = []
    try:
        for index, image in enumerate(result.images):
            name = _save_with_retries(output_file_name(request.id, index, image), image.data)
            kept.append(
                KeptImage(
                    name, image.sha256, len(image.data), image.width, image.height, image.format
                )
            )
        receipt = call_receipt(request, result, latency_ms, kept, tier)
        _save_with_retries(
            receipt_name(request.id, attempt.number), json.dumps(receipt).encode(), replace=True
        )
    except Exception:
        _delete_kept(kept)  # no file without its row
        raise
    receipt["images"] = kept
    return receipt


def record_kept_call(
    request: GenerationRequest,
    attempt: Attempt,
    receipt: dict,
    note: str = "",
    finish: bool = True,
    drift: Sequence[float | None] = (),
) -> list[OutputImage]:
    """Write the rows of a paid call whose payload is kept in storage (keep_payload): the
    attempt (billed from the receipt's usage), an output row per image, and the request's
    end. The one path for a worker that finished its call and for the sweep finishing a
    dead worker's; safe to run again (rows already written are kept).

    A request the sweep had given up while this call still ran is corrected to succeeded
    (its images kept, a note says so); a cancelled one stays cancelled with its cost kept.
    With `finish` False (or no image kept) only the attempt is recorded. `drift` holds each
    image's measured drift (a masked edit), recorded before the request ends.
    """
    with transaction.atomic():
        row = GenerationRequest.objects.select_for_update().get(pk=request.pk)
        attempt.refresh_from_db()
        if attempt.outcome != Attempt.Outcome.SUCCEEDED:
            latency = receipt.get("latency_ms") or 0
            attempt.record_success(
                usage=pricing.reading_from_json(receipt.get("usage")),
                provider_request_id=receipt.get("provider_request_id") or "",
                http_status=receipt.get("http_status") or 200,
                started=0.0,
                ended=latency / 1000,
                images=receipt.get("image_count", len(receipt["images"])),
                answer=billing.Answer(receipt.get("answer") or billing.Answer.COMPLETE),
                tier=receipt.get("tier") or PriceSheet.Tier.STANDARD,
            )
            assistant = receipt.get("assistant")
            if assistant is not None:
                attempt.record_mainline(
                    assistant.get("mainline_model") or "",
                    pricing.reading_from_json(assistant.get("mainline_usage")),
                )
        assistant = receipt.get("assistant")
        if assistant is not None and row.status != Status.CANCELLED:
            row.record_reply(assistant.get("text") or "", assistant.get("response_id") or "")
        recorded = set(
            row.outputs.filter(kind=OutputImage.Kind.FINAL).values_list("index", flat=True)
        )
        if row.status == Status.CANCELLED:
            # The designer cancelled: the paid result is discarded, its files with it (the
            # receipt stays as the call's record), so none is left without a row.
            recorded = set(range(len(receipt["images"])))
            _delete_kept(receipt["images"])
        outputs = []
        for index, kept in enumerate(receipt["images"]):
            if index in recorded:
                continue
            output = store_output(row, attempt, index, kept, name=kept.name)
            if index < len(drift) and drift[index] is not None:
                output.record_drift(drift[index])
            outputs.append(output)
        row.input_tokens = (
            attempt.input_text_tokens + attempt.input_image_tokens + (attempt.mainline_input_tokens)
        )
        row.output_tokens = (
            attempt.output_image_tokens
            + attempt.output_text_tokens
            + (attempt.mainline_output_tokens)
        )
        if row.status == Status.CANCELLED:
            row.record_discarded_call()
        elif not finish:
            pass
        elif row.status == Status.RUNNING:
            row._finish(Status.SUCCEEDED)
        elif row.was_given_up:
            given_up = timezone.localtime(row.finished_at).strftime("%H:%M:%S")
            row.correct_given_up(Status.SUCCEEDED)
            note = (
                f"The sweep gave this request up at {given_up} while its call was still "
                "running; the call then finished, and its images were kept."
            )
        for line in (receipt.get("note"), note):
            if line:
                row.add_ledger_note(line)
    request.refresh_from_db()
    return outputs


def read_receipt(request_id, attempt_number: int) -> dict | None:
    """The receipt a worker kept for this attempt, or None (none kept, or unreadable)."""
    name = receipt_name(request_id, attempt_number)
    try:
        if not default_storage.exists(name):
            return None
        with default_storage.open(name, "rb") as handle:
            receipt = json.loads(handle.read())
        receipt["images"] = [KeptImage(**item) for item in receipt["images"]]
        return receipt
    except Exception:
        log.exception(
            "request %s: the receipt of attempt %s is unreadable", request_id, attempt_number
        )
        return None


def _delete_kept(kept: Sequence[KeptImage]) -> None:
    for kept_image in kept:
        try:
            default_storage.delete(kept_image.name)
        except Exception:
            log.exception("could not delete the discarded image %s", kept_image.name)


def _save_with_retries(name: str, data: bytes, replace: bool = False) -> str:
    tries = max(1, settings.STORAGE_RETRIES)
    for number in range(1, tries + 1):
        try:
            if replace and default_storage.exists(name):
                default_storage.delete(name)
            return default_storage.save(name, ContentFile(data))
        except Exception:
            if number == tries:
                raise
            log.warning("storing %s failed (try %s of %s)", name, number, tries, exc_info=True)
            time.sleep(min(2 ** (number - 1), 10))
    raise AssertionError("unreachable")


def store_partial(request: GenerationRequest, attempt: Attempt, partial) -> OutputImage:
    """Keep one streamed preview as it arrives. Previews of image k take the indexes
    k * partial_images + partial_image_index; a retry's preview replaces an earlier attempt's."""
    index = partial.image_number * max(1, request.partial_images) + partial.partial_image_index
    earlier = OutputImage.objects.filter(
        request=request, kind=OutputImage.Kind.PARTIAL, index=index
    ).first()
    if earlier is not None:
        earlier.file.delete(save=False)
        earlier.delete()
    return store_output(request, attempt, index, partial.image, kind=OutputImage.Kind.PARTIAL)


def input_upload_to(instance: InputImage, filename: str) -> str:
    return f"inputs/{instance.request_id}/{filename}"


class InputImage(StoredImage, models.Model):
    """An image an edit sends: the source, a reference, or the mask; re-encoded when checked
    (studio.uploads) and kept so every retry sends the same bytes."""

    class Role(models.TextChoices):
        SOURCE = "source", "Source image"
        REFERENCE = "reference", "Reference image"
        MASK = "mask", "Mask"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    request = models.ForeignKey(GenerationRequest, on_delete=models.CASCADE, related_name="inputs")
    role = models.CharField(max_length=10, choices=Role.choices)
    position = models.PositiveSmallIntegerField(help_text="Order sent: the source first.")
    file = models.FileField(upload_to=input_upload_to, max_length=300)
    sha256 = models.CharField(max_length=64, help_text="Of the stored (re-encoded) file.")
    bytes = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    mode = models.CharField(max_length=10)
    original_name = models.CharField(max_length=200, blank=True)
    original_sha256 = models.CharField(max_length=64, help_text="Of the file as uploaded.")
    from_output = models.ForeignKey(
        OutputImage,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The studio output this input was taken from (Edit this image).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["request", "position"]
        constraints = [
            models.UniqueConstraint(fields=["request", "position"], name="one_input_per_position"),
            models.UniqueConstraint(
                fields=["request"], condition=Q(role="source"), name="one_source_per_request"
            ),
            models.UniqueConstraint(
                fields=["request"], condition=Q(role="mask"), name="one_mask_per_request"
            ),
        ]

    def get_absolute_url(self) -> str:
        return reverse("studio:input-file", args=[self.id])

    @property
    def download_name(self) -> str:
        """`<frame>-<request id>-<role>-<n>.<ext>`: n is the place it was sent in, from 1,
        the role keeps an input's name apart from the outputs'."""
        return (
            f"{self.download_stem(self.request)}-{self.role}-{self.position + 1}.{self.extension}"
        )

    @classmethod
    def store(
        cls,
        request: GenerationRequest,
        position: int,
        checked: CheckedImage,
        from_output: OutputImage | None = None,
    ) -> InputImage:
        """Save a checked image as inputs/<request-id>/<uuid>.<ext> and record it."""
        row = cls(
            request=request,
            role=checked.role,
            position=position,
            sha256=checked.sha256,
            bytes=len(checked.data),
            width=checked.width,
            height=checked.height,
            format=checked.format,
            mode=checked.mode,
            original_name=checked.original_name,
            original_sha256=checked.original_sha256,
            from_output=from_output or checked.from_output,
        )
        row.file.save(f"{row.id}.{checked.extension}", ContentFile(checked.data), save=False)
        try:
            row.save()
        except BaseException:
            row.file.storage.delete(row.file.name)
            raise
        return row

    def checked(self) -> CheckedImage:
        """This stored input as a checked image again (to run an edit again)."""
        return CheckedImage(
            role=self.role,
            data=self.read(),
            width=self.width,
            height=self.height,
            format=self.format,
            mode=self.mode,
            original_name=self.original_name,
            original_sha256=self.original_sha256,
            original_bytes=self.bytes,
            from_output=self.from_output,
        )

    def upload_tuple(self) -> tuple[str, bytes, str]:
        """(filename, bytes, mime type): how the openai SDK takes a file part."""
        extension = self.file.name.rsplit(".", 1)[-1]
        return (f"{self.role}-{self.position}.{extension}", self.read(), self.content_type)


def suggested_edit_prompt(reason: str) -> str:
    """The edit a reviewer's change request asks for, as a prompt that reads as one: the
    reason becomes the clause after "In the marked region only:"."""
    change = " ".join(reason.split()).rstrip(" .!;:,")
    # "Make the headline bigger" -> "make the headline bigger"; "SALE sign ..." stays.
    if change[:1].isupper() and not change[1:2].isupper():
        change = change[0].lower() + change[1:]
    return (
        f"In the marked region only: {change}. Keep everything outside the marked region "
        "exactly as it is."
    )


class ConversationQuerySet(models.QuerySet):
    def visible_to(self, user) -> ConversationQuerySet:
        """A conversation is its owner's working space; admins may look in."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser or user.groups.filter(name="admin").exists():
            return self
        return self.filter(owner=user)


class Conversation(models.Model):
    """Multi-turn image work with an assistant: each turn is a GenerationRequest sent to the
    Responses API, continuing from the previous turn's response."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="conversations"
    )
    title = models.CharField(max_length=200)
    route = models.ForeignKey(Route, on_delete=models.PROTECT, related_name="conversations")
    # The image tool's settings for every turn: width, height, quality, output_format,
    # partial_images.
    settings = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    last_response_id = models.CharField(max_length=200, blank=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("studio:conversation-detail", args=[self.id])

    @property
    def latest_turn(self) -> GenerationRequest | None:
        return self.turns.order_by("-created_at").first()

    @property
    def is_waiting(self) -> bool:
        """A turn is still being answered: the next one must wait for its response id."""
        return self.turns.exclude(status__in=TERMINAL_STATUSES).exists()

    def latest_image(self) -> OutputImage | None:
        return (
            OutputImage.objects.filter(request__conversation=self, kind=OutputImage.Kind.FINAL)
            .order_by("-created_at", "-index")
            .first()
        )

    def add_turn(
        self, created_by, message: str, extra_labels: Sequence[str] = ()
    ) -> GenerationRequest:
        """Send one message as a new turn, continuing from the last answered response; the
        newest image so far is its parent in the lineage (a follow-up usually edits it).
        The text it quotes (and `extra_labels`) is expected in the image, as for any request."""
        if self.is_waiting:
            raise ValidationError("Wait for the assistant to answer the last turn.")
        return GenerationRequest.submit(
            created_by=created_by,
            route=self.route,
            prompt=message,
            width=self.settings["width"],
            height=self.settings["height"],
            quality=self.settings["quality"],
            output_format=self.settings["output_format"],
            partial_images=self.settings.get("partial_images", 0),
            parent_output=self.latest_image(),
            conversation=self,
            expected_text_labels=imagerules.expected_labels(message, extra_labels),
        )


class SubmissionKey(models.Model):
    """One form as the designer was shown it (composer, edit page, conversation): the key is
    written into the page, and the first POST that carries it claims it. A second POST of the
    same form (a double click, Ctrl+Enter pressed twice, a browser resending) finds the key
    taken and is shown what the first made, so one intention never makes two paid calls.
    See studio.views.sent_once; the sweep deletes keys older than a day."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=64)
    # Where the first POST led (the request or conversation it made); empty while it runs.
    target = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="one_submission_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
