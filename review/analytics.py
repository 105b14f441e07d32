"""Frame analytics: how each frame, and each frozen version of it, fares in review.

Five queries whatever the number of frames: requests and their cost, outputs and their
review outcomes, change requests, and the latest inspection of each label, each grouped by
frame version; then the versions themselves. Frame totals are sums of their versions.
Costs are split by route owner: the sandbox's are simulated and never mixed with real spend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Exists, OuterRef, Q, Subquery, Sum

from review.models import Decision, TextInspection
from studio.models import GenerationRequest, OutputImage, PromptFrameVersion, ReviewStatus

SANDBOX = Q(route__owner="sandbox")


@dataclass
class Figures:
    """The counts behind one row; the rates are computed from them."""

    requests: int = 0
    outputs: int = 0
    decided: int = 0
    first_decided: int = 0
    first_pass_approved: int = 0
    approved: int = 0
    approved_real: int = 0
    approved_simulated: int = 0
    inspected: int = 0
    exact: int = 0
    changes_requested: int = 0
    drift_flags: int = 0
    real_cost: Decimal | None = None
    simulated_cost: Decimal | None = None

    def add(self, other: Figures) -> None:
        for name in self.__dataclass_fields__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, int):
                setattr(self, name, mine + theirs)
            elif theirs is not None:
                setattr(self, name, (mine or Decimal(0)) + theirs)

    @staticmethod
    def _share(part: int, whole: int) -> float | None:
        return 100 * part / whole if whole else None

    @property
    def first_pass_rate(self) -> float | None:
        """Outputs approved at their first decision, of the outputs decided at least once."""
        return self._share(self.first_pass_approved, self.first_decided)

    @property
    def approval_rate(self) -> float | None:
        """Outputs approved now, of the outputs with a decision."""
        return self._share(self.approved, self.decided)

    @property
    def exactness(self) -> float | None:
        """Labels whose latest inspection is exact, of the labels inspected."""
        return self._share(self.exact, self.inspected)

    @property
    def real_cost_per_approved(self) -> Decimal | None:
        if self.real_cost is None or not self.approved_real:
            return None
        return self.real_cost / self.approved_real

    @property
    def simulated_cost_per_approved(self) -> Decimal | None:
        if self.simulated_cost is None or not self.approved_simulated:
            return None
        return self.simulated_cost / self.approved_simulated


@dataclass
class FrameRow:
    frame_id: int
    name: str
    key: str
    total: Figures = field(default_factory=Figures)
    versions: list[tuple[PromptFrameVersion, Figures]] = field(default_factory=list)


def frame_analytics(frame_key: str | None = None) -> list[FrameRow]:
    """One row per frame (optionally only one frame), each with its versions, newest first."""
    requests = GenerationRequest.objects.filter(frame_version__isnull=False)
    if frame_key:
        requests = requests.filter(frame_version__frame__key=frame_key)
    figures: dict[int, Figures] = {}

    def at(version_id: int) -> Figures:
        return figures.setdefault(version_id, Figures())

    for row in (
        requests.order_by()
        .values("frame_version")
        .annotate(
            requests=Count("pk"),
            real_cost=Sum("cost", filter=~SANDBOX),
            simulated_cost=Sum("cost", filter=SANDBOX),
        )
    ):
        item = at(row["frame_version"])
        item.requests = row["requests"]
        item.real_cost, item.simulated_cost = row["real_cost"], row["simulated_cost"]

    first_verdict = Subquery(
        Decision.objects.filter(output=OuterRef("pk"))
        .order_by("created_at", "id")
        .values("verdict")[:1]
    )
    approved = Q(review_status=ReviewStatus.APPROVED)
    for row in (
        OutputImage.objects.filter(kind=OutputImage.Kind.FINAL, request__in=requests)
        .alias(first_verdict=first_verdict)
        .order_by()
        .values("request__frame_version")
        .annotate(
            outputs=Count("pk"),
            decided=Count("pk", filter=~Q(review_status=ReviewStatus.AWAITING)),
            first_decided=Count("pk", filter=Q(first_verdict__isnull=False)),
            first_pass_approved=Count("pk", filter=Q(first_verdict=Decision.Verdict.APPROVED)),
            approved=Count("pk", filter=approved),
            approved_real=Count("pk", filter=approved & ~Q(request__route__owner="sandbox")),
            approved_simulated=Count("pk", filter=approved & Q(request__route__owner="sandbox")),
            drift_flags=Count("pk", filter=Q(drift_flagged=True)),
        )
    ):
        item = at(row.pop("request__frame_version"))
        for name, value in row.items():
            setattr(item, name, value)

    for row in (
        Decision.objects.filter(request__in=requests, verdict=Decision.Verdict.CHANGES_REQUESTED)
        .order_by()
        .values("request__frame_version")
        .annotate(count=Count("pk"))
    ):
        at(row["request__frame_version"]).changes_requested = row["count"]

    newer = TextInspection.objects.filter(
        output=OuterRef("output"), label=OuterRef("label"), id__gt=OuterRef("id")
    )
    for row in (
        TextInspection.objects.filter(request__in=requests)
        .filter(~Exists(newer))
        .order_by()
        .values("request__frame_version")
        .annotate(
            inspected=Count("pk"),
            exact=Count("pk", filter=Q(verdict=TextInspection.Verdict.EXACT)),
        )
    ):
        item = at(row["request__frame_version"])
        item.inspected, item.exact = row["inspected"], row["exact"]

    versions = PromptFrameVersion.objects.select_related("frame").order_by(
        "frame__position", "frame__name", "-number"
    )
    versions = versions.filter(frame__key=frame_key) if frame_key else versions
    rows: dict[int, FrameRow] = {}
    for version in versions:
        frame = version.frame
        row = rows.setdefault(frame.pk, FrameRow(frame.pk, frame.name, frame.key))
        version_figures = figures.get(version.pk, Figures())
        row.versions.append((version, version_figures))
        row.total.add(version_figures)
    return list(rows.values())
