from __future__ import annotations

import io
import string
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django import forms

from campaigns import table
from campaigns.models import DEFAULT_FILE_NAME_PATTERN, Campaign, price_sheet_for
from studio import imagerules
from studio.forms import RouteChoiceField
from studio.models import Budget, GenerationRequest, OutputImage, PromptFrame, Route
from studio.uploads import Role, UploadRejected, read_input_image

MAX_TABLE_BYTES = 8 * 1024 * 1024
PREVIEW_PROMPTS = 5
PREVIEW_ESTIMATES = 50
FILE_NAME_FIELDS = ("row", "locale", "width", "height", "ext", "request_id", "index")


@dataclass
class CampaignPreview:
    """What the launch would send and cost: prompts of the first rows, an estimate per row
    (the first ones shown) and for the whole table, and the budgets it must fit."""

    rows: list = field(default_factory=list)  # (RowSpec, estimated cost)
    total: Decimal | None = None
    row_count: int = 0
    budgets: list = field(default_factory=list)  # (budget, remaining)
    fits: bool = True


def source_reader(user) -> table.SourceReader:
    """Read a `source` cell: the ID of a final output this user may see, its file checked by
    the same upload rules as the edit page's source (ValueError says what is wrong)."""
    visible = GenerationRequest.objects.visible_to(user)

    def read(value: str):
        try:
            output_id = uuid.UUID(value) if len(value) <= 36 else None
        except ValueError:
            output_id = None
        if output_id is None:
            raise ValueError(f"{value[:40]!r} is not an output ID.")
        output = OutputImage.objects.filter(
            pk=output_id,
            request__in=visible,
            kind=OutputImage.Kind.FINAL,
            deleted_at__isnull=True,
        ).first()
        if output is None:
            raise ValueError(f"no output {output_id} that you may edit.")
        try:
            data = output.read()
        except OSError:
            raise ValueError(f"the file of output {output_id} is no longer stored.") from None
        try:
            checked = read_input_image(
                io.BytesIO(data), len(data), f"output {output_id}", Role.SOURCE
            )
        except UploadRejected as problem:
            raise ValueError(str(problem)) from None
        return replace(checked, from_output=output)

    return read


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=200)
    frame = forms.ModelChoiceField(
        queryset=PromptFrame.objects.none(),
        required=False,
        empty_label="Free prompt with {slot} gaps",
    )
    template = forms.CharField(
        label="Free prompt",
        required=False,
        max_length=imagerules.MAX_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Write {slot} where each row's value goes, e.g. "
        'A banner that says "{headline}".',
    )
    route = RouteChoiceField(queryset=Route.objects.none(), empty_label=None)
    when = forms.ChoiceField(
        label="When",
        choices=Campaign.Mode.choices,
        initial=Campaign.Mode.NOW,
        required=False,
        help_text="Batch: OpenAI's Batch API runs the rows within 24 hours at the batch price.",
    )
    size = forms.ChoiceField(choices=imagerules.SIZE_PRESETS, initial="1024x1024")
    quality = forms.ChoiceField(choices=[(q, q) for q in imagerules.QUALITIES], initial="low")
    output_format = forms.ChoiceField(
        choices=[(f, f.upper()) for f in imagerules.OUTPUT_FORMATS], initial="png"
    )
    n = forms.IntegerField(
        label="Images per row", min_value=1, max_value=table.MAX_IMAGES_PER_ROW, initial=1
    )
    layout = forms.ChoiceField(
        choices=[
            ("table", "Table: a header row of slot names, one row per image"),
            ("matrix", "Localization matrix: slot names down, one column per locale"),
        ],
        initial="table",
        widget=forms.RadioSelect,
    )
    table = forms.CharField(
        label="Paste the table",
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text="CSV or TSV (copied from a spreadsheet). Optional columns: "
        + ", ".join(table.SETTING_COLUMNS)
        + ". Several labels in one cell: separate them with |.",
    )
    table_file = forms.FileField(
        label="Or upload it", required=False, help_text="A .csv or .tsv file, UTF-8."
    )
    file_name_pattern = forms.CharField(
        max_length=200,
        initial=DEFAULT_FILE_NAME_PATTERN,
        help_text="File names in the download: " + ", ".join(f"{{{f}}}" for f in FILE_NAME_FIELDS),
    )

    def __init__(self, *args, user=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["frame"].queryset = PromptFrame.objects.active()
        routes = Route.objects.filter(enabled=True)
        self.fields["route"].queryset = routes
        if "route" not in self.initial:
            sandbox = next((route for route in routes if route.is_sandbox), None)
            self.initial["route"] = sandbox.pk if sandbox else None
        self.checked: table.CheckedTable | None = None

    def clean_when(self) -> str:
        return self.cleaned_data.get("when") or Campaign.Mode.NOW

    def clean_file_name_pattern(self) -> str:
        pattern = self.cleaned_data["file_name_pattern"]
        try:
            names = [
                name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None
            ]
        except ValueError:
            raise forms.ValidationError("Unbalanced { or }.") from None
        unknown = sorted(set(names) - set(FILE_NAME_FIELDS))
        if unknown or "" in names:
            raise forms.ValidationError(
                f"Use only {', '.join('{' + f + '}' for f in FILE_NAME_FIELDS)}."
            )
        if "/" in pattern or "\\" in pattern or pattern.startswith("."):
            raise forms.ValidationError("A file name, not a path: no / or \\.")
        if "row" not in names and "request_id" not in names:
            raise forms.ValidationError("Include {row} or {request_id} so every name differs.")
        return pattern

    def clean(self) -> dict:
        data = super().clean()
        route = data.get("route")
        if (
            data.get("when") == Campaign.Mode.BATCH
            and route is not None
            and not route.supports_batch
        ):
            self.add_error(
                "when",
                f"Route {route.name} does not take batches; run the campaign now, or choose a "
                "route that declares batch support.",
            )
        frame = data.get("frame")
        template = (data.get("template") or "").strip()
        if frame is None and not template:
            self.add_error("template", "Write a prompt with {slot} gaps, or choose a frame.")
            return data
        text = self._table_text(data)
        if text is None:
            return data
        try:
            if data.get("layout") == "matrix":
                rows = table.matrix_to_rows(text)
            else:
                rows = table.read_rows(text)
        except ValueError as problem:
            self.add_error("table_file" if data.get("table_file") else "table", str(problem))
            return data
        width, height = imagerules.parse_size(data.get("size") or "") or (1024, 1024)
        defaults = table.Defaults(
            width=width,
            height=height,
            quality=data.get("quality") or "low",
            output_format=data.get("output_format") or "png",
            n=data.get("n") or 1,
        )
        renderer = frame.current_version if frame else table.free_prompt_frame(template)
        reader = source_reader(self.user) if self.user is not None else None
        self.checked = table.check(rows, renderer, defaults, reader)
        if data.get("when") == Campaign.Mode.BATCH and any(r.source for r in self.checked.rows):
            self.add_error(
                "when",
                "Edits run now: the Batch API tier here takes generations only.",
            )
        if self.checked.problems:
            count = len(self.checked.problems)
            self.add_error(
                None,
                f"The table has {count:,} problem{'s' if count != 1 else ''}; nothing was "
                "queued. Each is listed below with its row and column.",
            )
        return data

    def _table_text(self, data: dict) -> str | None:
        upload = data.get("table_file")
        if upload is not None:
            if upload.size > MAX_TABLE_BYTES:
                self.add_error("table_file", f"At most {MAX_TABLE_BYTES // (1024 * 1024)} MB.")
                return None
            try:
                text = table.decode(upload.read())
            except ValueError as problem:
                self.add_error("table_file", str(problem))
                return None
            # Shown in the paste box from now on: a browser does not send a chosen file
            # again, and "Launch" after "Check the table" must launch what was checked.
            self.data = self.data.copy()
            self.data["table"] = text
            return text
        text = data.get("table") or ""
        if not text.strip():
            self.add_error("table", "Paste a table or upload a file.")
            return None
        return text

    def frame_version(self):
        frame = self.cleaned_data.get("frame")
        return frame.current_version if frame else None

    def preview(self, user) -> CampaignPreview:
        """Estimates by the same build the launch uses, for every row of a valid table."""
        preview = CampaignPreview()
        route = self.cleaned_data.get("route")
        if self.checked is None or not self.checked.rows or route is None:
            return preview
        total = Decimal(0)
        sheet = price_sheet_for(self.cleaned_data.get("when") or Campaign.Mode.NOW)
        for spec in self.checked.rows:
            built = GenerationRequest.build(
                price_sheet=sheet,
                created_by=user,
                route=route,
                prompt=spec.prompt,
                width=spec.width,
                height=spec.height,
                quality=spec.quality,
                output_format=spec.output_format,
                n=spec.n,
                input_sizes=[(spec.source.width, spec.source.height)] if spec.source else (),
            )
            if built.estimated_cost is None:
                total = None
            elif total is not None:
                total += built.estimated_cost
            if len(preview.rows) < PREVIEW_ESTIMATES:
                preview.rows.append((spec, built.estimated_cost))
        preview.total = total
        preview.row_count = len(self.checked.rows)
        if not route.is_sandbox:
            preview.budgets = [(b, b.remaining()) for b in Budget.applying_to(user)]
            preview.fits = all(
                total is not None and total <= remaining for _b, remaining in preview.budgets
            )
        return preview
