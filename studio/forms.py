from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models, transaction
from django.utils import timezone

from studio import imagerules, pricing
from studio.models import (
    DEFAULT_MODEL,
    Budget,
    Conversation,
    GenerationRequest,
    OutputImage,
    PromptFrame,
    RenderedPrompt,
    ReviewStatus,
    Route,
    SlotErrors,
    Status,
    suggested_edit_prompt,
)
from studio.uploads import (
    CheckedImage,
    Role,
    UploadRejected,
    check_input_count,
    read_input_image,
    read_mask,
)

CUSTOM_SIZE = "custom"
SLOT_PREFIX = "slot_"


# Date filters accept days the studio can hold: none before this, none past a year from now.
# Further out (0001-01-01, 9999-12-31) a day's end or a chart's weeks overflow Python's dates
# or take a page minutes to draw.
EARLIEST_FILTER_DATE = date(2000, 1, 1)
FILTER_DATE_YEARS_AHEAD = 1


class FilterDateField(forms.DateField):
    """A date in a filter, bounded so that every date arithmetic on it stays in range."""

    widget = forms.DateInput(attrs={"type": "date"})

    def validate(self, value) -> None:
        super().validate(value)
        if value in self.empty_values:
            return
        latest = timezone.localdate().replace(month=12, day=31)
        latest = latest.replace(year=latest.year + FILTER_DATE_YEARS_AHEAD)
        if not EARLIEST_FILTER_DATE <= value <= latest:
            raise forms.ValidationError(
                f"Choose a date between {EARLIEST_FILTER_DATE:%Y-%m-%d} and {latest:%Y-%m-%d}.",
                code="out_of_range",
            )

    def to_python(self, value):
        try:
            return super().to_python(value)
        except OverflowError:  # a year past 9999 (Django lets some through as overflow)
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class UsernameLengthChecked:
    """Django's login forms set the username's max_length after the field is built, so the
    length is never checked: a longer name went on to authenticate() and to django-axes,
    whose record of the failed login holds 255 characters (PostgreSQL refused: a 500)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.validators.append(MaxLengthValidator(field.max_length))


class LoginForm(UsernameLengthChecked, AuthenticationForm):
    pass


class AdminLoginForm(UsernameLengthChecked, AdminAuthenticationForm):
    pass


class RouteChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, route: Route) -> str:
        return f"{route.name} · owner {route.owner} · {route.pricing_label}"


@dataclass
class Preview:
    """What the composer shows before submission: the prompt, its problems and its cost."""

    prompt: str | None = None
    labels: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    estimate: pricing.Estimate | None = None
    route: Route | None = None
    budgets: list[tuple[Budget, object]] = field(default_factory=list)

    @property
    def char_count(self) -> int:
        return len(self.prompt or "")

    @property
    def max_chars(self) -> int:
        return imagerules.MAX_PROMPT_CHARS


def extra_labels_field() -> forms.CharField:
    return forms.CharField(
        label="Also check this text",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One label a line: text the image must show that the prompt does not quote "
        "(a wordmark, text kept from the source image). Quoted text is always checked.",
    )


def clean_extra_labels(form: forms.Form) -> list[str]:
    labels = imagerules.label_lines(form.cleaned_data.get("extra_labels", ""))
    for problem in imagerules.label_problems(labels):
        form.add_error("extra_labels", problem)
    return labels


def default_route(routes) -> int | None:
    """The route a form starts on: the sandbox when it is offered, so nothing is billed by
    a designer who did not choose a paid route; else none chosen."""
    sandbox = next((route for route in routes if route.is_sandbox), None)
    return sandbox.pk if sandbox else None


class ComposerForm(forms.Form):
    frame = forms.ModelChoiceField(
        queryset=PromptFrame.objects.none(),
        required=False,
        empty_label="Free prompt (no frame)",
    )
    prompt = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text='Quote every word that must appear in the image, e.g. "Spring Sale".',
    )
    route = RouteChoiceField(queryset=Route.objects.none(), empty_label=None)
    size = forms.ChoiceField(
        choices=[*imagerules.SIZE_PRESETS, (CUSTOM_SIZE, "Custom width x height")],
        initial="1024x1024",
    )
    width = forms.IntegerField(required=False, min_value=1, max_value=99_999)
    height = forms.IntegerField(required=False, min_value=1, max_value=99_999)
    quality = forms.ChoiceField(
        choices=[(q, q) for q in imagerules.QUALITIES],
        initial="low",
        help_text="Low for drafts; medium or high for finals. Auto is estimated as high.",
    )
    output_format = forms.ChoiceField(
        choices=[(f, f.upper()) for f in imagerules.OUTPUT_FORMATS], initial="png"
    )
    output_compression = forms.IntegerField(
        required=False, min_value=0, max_value=100, help_text="JPEG and WebP only, 0-100."
    )
    background = forms.ChoiceField(choices=[(b, b) for b in imagerules.BACKGROUNDS], initial="auto")
    n = forms.IntegerField(label="Images", min_value=1, max_value=10, initial=1)
    partial_images = forms.IntegerField(
        label="Partial previews",
        required=False,
        min_value=0,
        max_value=3,
        initial=0,
        help_text="Each preview adds output tokens.",
    )
    extra_labels = extra_labels_field()

    operation = GenerationRequest.Operation.GENERATE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rendered: RenderedPrompt | None = None
        self.fields["frame"].queryset = self.frames()
        routes = Route.objects.filter(enabled=True)
        self.fields["route"].queryset = routes
        if "route" not in self.initial:
            self.initial["route"] = default_route(routes)
        self.chosen_frame = self._chosen_frame()
        self.version = self.chosen_frame.current_version if self.chosen_frame else None
        for slot in self.version.slot_list() if self.version else []:
            self.fields[SLOT_PREFIX + slot.name] = forms.CharField(
                label=slot.label,
                required=False,
                help_text=slot.help,
                widget=forms.Textarea(attrs={"rows": 2, "placeholder": slot.example})
                if slot.text
                else forms.TextInput(attrs={"placeholder": slot.example}),
            )
            self.fields[SLOT_PREFIX + slot.name].slot = slot

    @classmethod
    def frames(cls) -> models.QuerySet[PromptFrame]:
        return PromptFrame.objects.active()

    def _chosen_frame(self) -> PromptFrame | None:
        raw = self.data.get("frame") if self.is_bound else self.initial.get("frame")
        if isinstance(raw, PromptFrame):
            return raw
        if not raw:
            return None
        try:
            return self.fields["frame"].queryset.filter(pk=int(raw)).first()
        except (TypeError, ValueError):
            return None

    def slot_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(SLOT_PREFIX)]

    def setting_fields(self) -> list[forms.BoundField]:
        names = ["route", "size", "width", "height", "quality", "output_format"]
        names += ["output_compression", "background", "n", "partial_images"]
        return [self[name] for name in names]

    def clean(self) -> dict:
        data = super().clean()
        data["extra_labels"] = clean_extra_labels(self)
        self._clean_prompt(data)
        self._clean_size(data)
        output_format = data.get("output_format")
        if data.get("output_compression") is not None and output_format == "png":
            self.add_error(
                "output_compression",
                "Compression applies only to JPEG and WebP; leave it empty for PNG.",
            )
        route = data.get("route")
        for problem in imagerules.background_problems(data.get("background"), output_format):
            self.add_error("background", problem)
        if data.get("background") == "transparent" and route and not route.supports_transparent:
            self.add_error(
                "background",
                f"gpt-image-2 on route {route.name} does not support a transparent background. "
                "Choose auto or opaque and remove the background in post-processing, or use a "
                "route that declares transparent support.",
            )
        data["partial_images"] = data.get("partial_images") or 0
        if data["partial_images"] and route and not route.supports_streaming:
            self.add_error(
                "partial_images",
                f"Route {route.name} does not stream partial previews; set 0 or choose a "
                "route that supports streaming.",
            )
        return data

    def _clean_prompt(self, data: dict) -> None:
        frame = data.get("frame")
        if frame is None:
            prompt = (data.get("prompt") or "").strip()
            if not prompt:
                self.add_error("prompt", "Write a prompt, or choose a frame and fill its slots.")
                return
            self.rendered = RenderedPrompt(prompt, [])
        else:
            if frame.operation == PromptFrame.Operation.EDIT and self.operation != frame.operation:
                self.add_error(
                    "frame",
                    f"The {frame.name} frame edits an existing image: it needs a source image, "
                    "so it is composed on the edit page.",
                )
            values = {
                bound.field.slot.name: self.cleaned_data.get(bound.name, "")
                for bound in self.slot_fields()
            }
            try:
                self.rendered = self.version.render(values)
            except SlotErrors as problems:
                for slot_name, message in problems.errors.items():
                    self.add_error(SLOT_PREFIX + slot_name, message)
                return
        # Quoted text becomes labels too; the extra ones were checked in clean().
        quoted = imagerules.quoted_labels(self.rendered.prompt)
        for problem in imagerules.label_problems(quoted + self.rendered.expected_text_labels):
            self.add_error("prompt" if frame is None else None, problem)
        if len(self.rendered.prompt) > imagerules.MAX_PROMPT_CHARS:
            self.add_error(
                "prompt" if frame is None else None,
                f"The prompt is {len(self.rendered.prompt):,} characters; gpt-image-2 accepts "
                f"at most {imagerules.MAX_PROMPT_CHARS:,}.",
            )

    def expected_labels(self) -> list[str]:
        """What the image must show, by the studio's one label rule: shown in the preview and
        recorded with the request."""
        if self.rendered is None:
            return []
        extra = imagerules.label_lines(self["extra_labels"].value() or "")
        return imagerules.expected_labels(
            self.rendered.prompt, self.rendered.expected_text_labels, extra
        )

    def _clean_size(self, data: dict) -> None:
        size = data.get("size")
        if size == CUSTOM_SIZE:
            width, height = data.get("width"), data.get("height")
            if width is None or height is None:
                self.add_error("width", "Enter both width and height for a custom size.")
                return
        elif size:
            width, height = imagerules.parse_size(size)
        else:
            return
        problems = imagerules.size_problems_by_edge(width, height)
        for edge, problem in problems:
            # A custom size's problem goes on the edge that breaks the rule ("size" when the
            # size as a whole does); a preset's on the size picker.
            self.add_error((edge or "size") if size == CUSTOM_SIZE else "size", problem)
        if problems:
            # No estimate for a size the rules refuse: the preview prices only what is valid.
            data.pop("width", None), data.pop("height", None)
            return
        data["width"], data["height"] = width, height

    def preview(self) -> Preview:
        """The prompt and estimate from whatever is valid so far (bound) or the defaults."""
        if self.is_bound:
            self.is_valid()
            values = self.cleaned_data
            problems = [
                f"{self[name].label if name in self.fields else 'Form'}: {message}"
                for name, messages in self.errors.items()
                for message in messages
            ]
        else:
            values = {name: self[name].value() for name in self.fields}
            values["route"] = self.fields["route"].queryset.filter(pk=values["route"]).first()
            values["width"], values["height"] = imagerules.parse_size(values["size"]) or (0, 0)
            problems = []
        preview = Preview(
            prompt=self.rendered.prompt if self.rendered else None,
            labels=self.expected_labels(),
            problems=problems,
            route=values.get("route"),
        )
        # Partial previews are priced even while the form refuses them.
        try:
            partial_images = self.fields["partial_images"].clean(self["partial_images"].value())
        except forms.ValidationError:
            partial_images = 0
        width, height = self.size_for_estimate(values)
        settings = [width, height, values.get("quality"), values.get("n")]
        if preview.route and all(settings):
            preview.estimate = preview.route.estimate(
                prompt=preview.prompt or "",
                width=int(width),
                height=int(height),
                quality=values["quality"],
                n=int(values["n"]),
                partial_images=partial_images or 0,
                input_images=self.input_sizes_for_estimate(),
            )
        return preview

    def size_for_estimate(self, values: dict) -> tuple[int | None, int | None]:
        return values.get("width"), values.get("height")

    def input_sizes_for_estimate(self) -> list[tuple[int, int]]:
        return []

    def submit(self, user) -> GenerationRequest:
        """Create and queue the request (raises BudgetExceeded, creating nothing)."""
        return GenerationRequest.submit(**self.submission(user))

    def submission(self, user) -> dict:
        data = self.cleaned_data
        slot_values = {
            bound.field.slot.name: data.get(bound.name, "") for bound in self.slot_fields()
        }
        return dict(
            created_by=user,
            route=data["route"],
            prompt=self.rendered.prompt,
            width=data["width"],
            height=data["height"],
            quality=data["quality"],
            output_format=data["output_format"],
            output_compression=data["output_compression"],
            background=data["background"],
            n=data["n"],
            partial_images=data["partial_images"],
            requested_model=DEFAULT_MODEL,
            frame_version=self.version if data.get("frame") else None,
            slot_values=slot_values,
            expected_text_labels=self.expected_labels(),
        )


def initial_for_frame(frame: PromptFrame) -> dict:
    """Start a frame with its recommended settings."""
    size = frame.recommended_size
    preset = size if size in dict(imagerules.SIZE_PRESETS) else CUSTOM_SIZE
    width, height = imagerules.parse_size(size) or (None, None)
    return {
        "frame": frame.pk,
        "size": preset,
        "width": width if preset == CUSTOM_SIZE else None,
        "height": height if preset == CUSTOM_SIZE else None,
        "quality": frame.recommended_quality,
        "output_format": frame.recommended_format,
    }


def initial_from_request(generation: GenerationRequest) -> dict:
    """Everything a request asked for, ready to compose again."""
    preset = generation.size if generation.size in dict(imagerules.SIZE_PRESETS) else CUSTOM_SIZE
    initial = {
        "route": generation.route_id if generation.route.enabled else None,
        "size": preset,
        "width": generation.width if preset == CUSTOM_SIZE else None,
        "height": generation.height if preset == CUSTOM_SIZE else None,
        "quality": generation.quality,
        "output_format": generation.output_format,
        "output_compression": generation.output_compression,
        "background": generation.background,
        "n": generation.n,
        "partial_images": generation.partial_images,
        "extra_labels": "\n".join(
            label
            for label in generation.expected_text_labels
            if label not in imagerules.quoted_labels(generation.prompt)
        ),
    }
    frame = generation.frame_version.frame if generation.frame_version_id else None
    if frame is not None and frame.is_active:
        initial["frame"] = frame.pk
        initial.update({SLOT_PREFIX + k: v for k, v in generation.slot_values.items()})
    else:
        initial["prompt"] = generation.prompt
    return {key: value for key, value in initial.items() if value is not None}


SOURCE_SIZE = "source"
INPUT_ACCEPT = ",".join(imagerules.INPUT_MIME_TYPES)
MAX_CLIENT_EDGE = 100_000


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files under one name; cleans to a list (Django's documented recipe)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None) -> list:
        if isinstance(data, list | tuple):
            return [super(MultipleFileField, self).clean(item, initial) for item in data if item]
        return [super().clean(data, initial)] if data else []


class EditForm(ComposerForm):
    """An edit: a source image (uploaded, or one of the studio's outputs), up to 15 reference
    images and an optional mask, with an edit frame or a free prompt and the usual settings.

    The files are checked by studio.uploads here, before anything is stored; the browser runs
    the same rules (imagerules.rules_for_browser) before it uploads, but this is the check
    that counts. `for_preview` forms see no files and check none: they only price the edit.
    """

    operation = GenerationRequest.Operation.EDIT

    source = forms.FileField(
        label="Source image",
        required=False,
        widget=forms.FileInput(attrs={"accept": INPUT_ACCEPT}),
        help_text="PNG, JPEG or WebP, under 50 MB. The image the edit changes.",
    )
    source_output = forms.UUIDField(required=False, widget=forms.HiddenInput)
    references = MultipleFileField(
        label="Reference images",
        required=False,
        widget=MultipleFileInput(attrs={"multiple": True, "accept": INPUT_ACCEPT}),
        help_text=f"Up to {imagerules.MAX_INPUT_IMAGES - 1} more images the edit may draw on.",
    )
    mask = forms.FileField(
        required=False,
        widget=forms.FileInput(attrs={"accept": imagerules.MIME_BY_FORMAT["png"]}),
        help_text="A PNG the size of the source with an alpha channel: fully transparent "
        "pixels mark the area to change. Or paint it over the source.",
    )
    # The sizes of the chosen files as the browser measured them: used to price the live
    # preview only (the files themselves are not sent until submission).
    input_sizes = forms.CharField(required=False, widget=forms.HiddenInput)
    # A reviewer's change request whose drawn region is the mask, unless a mask file (or a
    # painting) is sent instead.
    region_decision = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, user=None, for_preview: bool = False, **kwargs) -> None:
        self.user = user
        self.for_preview = for_preview
        super().__init__(*args, **kwargs)
        self.checked_inputs: list[CheckedImage] = []
        # The source once it passed its checks, even when another file did not: its size
        # still decides "same as the source", so a bad mask is the only error shown.
        self.checked_source: CheckedImage | None = None
        self.source_from_output: OutputImage | None = self._source_output()
        self.suggestion = self._suggestion()
        presets = list(self.fields["size"].choices)
        self.fields["size"].choices = [(SOURCE_SIZE, self._source_size_label()), *presets]
        self.fields["size"].initial = SOURCE_SIZE
        if "size" not in self.initial:
            self.initial["size"] = SOURCE_SIZE

    @classmethod
    def frames(cls) -> models.QuerySet[PromptFrame]:
        return PromptFrame.objects.active().filter(operation=PromptFrame.Operation.EDIT)

    def _source_output(self) -> OutputImage | None:
        raw = self.data.get("source_output") if self.is_bound else self.initial.get("source_output")
        if not raw or self.user is None:
            return None
        try:
            return (
                OutputImage.objects.filter(
                    request__in=GenerationRequest.objects.visible_to(self.user),
                    kind=OutputImage.Kind.FINAL,
                    deleted_at__isnull=True,
                )
                .select_related("request")
                .filter(pk=raw)
                .first()
            )
        except ValidationError:
            return None

    def _suggestion(self):
        """The change request (a review decision with a drawn region) this edit follows,
        when it is about the source output and this user may see it."""
        raw = (
            self.data.get("region_decision")
            if self.is_bound
            else self.initial.get("region_decision")
        )
        if not raw or self.source_from_output is None:
            return None
        from review.models import Decision

        try:
            return (
                Decision.objects.select_related("reviewer")
                .exclude(region_mask="")
                .filter(pk=int(raw), output=self.source_from_output)
                .first()
            )
        except (TypeError, ValueError):
            return None

    def _source_size_label(self) -> str:
        output = self.source_from_output
        if output is None:
            return "Same as the source image"
        width, height = imagerules.edit_output_size(output.width, output.height)
        return f"Same as the source ({width} x {height})"

    def clean(self) -> dict:
        if not self.for_preview:
            self._clean_inputs()
        data = super().clean()
        route = data.get("route")
        if route is not None and not route.supports_edits:
            self.add_error("route", f"Route {route.name} does not take edits.")
        has_mask = any(item.role == Role.MASK for item in self.checked_inputs)
        if route is not None and has_mask and not route.supports_masks:
            self.add_error("mask", f"Route {route.name} does not take masks.")
        return data

    def _clean_inputs(self) -> None:
        """Read and check every file; each broken rule is an error next to its field."""
        data = self.cleaned_data
        upload, references = data.get("source"), data.get("references") or []
        if data.get("source_output") and self.source_from_output is None:
            self.add_error("source", "That output is not available to edit.")
            return
        if upload is None and self.source_from_output is None:
            self.add_error("source", "Choose the image to edit.")
            return
        if self.errors.get("references"):
            return
        try:
            check_input_count(1 + len(references))
        except UploadRejected as problem:
            self.add_error("references", str(problem))
            return
        try:
            if upload is not None:
                source = read_input_image(upload, upload.size, upload.name, Role.SOURCE)
            else:
                source = self._checked_output(self.source_from_output)
        except UploadRejected as problem:
            self.add_error("source", str(problem))
            return
        self.checked_source = source
        checked = [source]
        for file in references:
            try:
                checked.append(read_input_image(file, file.size, file.name, Role.REFERENCE))
            except UploadRejected as problem:
                self.add_error("references", f"{file.name}: {problem}")
        mask = data.get("mask")
        if mask is not None:
            try:
                checked.append(read_mask(mask, mask.size, mask.name, source))
            except UploadRejected as problem:
                self.add_error("mask", str(problem))
        elif data.get("region_decision"):
            if self.suggestion is None:
                self.add_error("mask", "That reviewer's region is not available for this image.")
            else:
                try:
                    region = self.suggestion.region_mask.open("rb").read()
                    checked.append(
                        read_mask(io.BytesIO(region), len(region), "the reviewer's region", source)
                    )
                except (UploadRejected, OSError) as problem:
                    self.add_error("mask", f"The reviewer's region cannot be the mask: {problem}")
        if not self.errors:
            self.checked_inputs = checked

    def _checked_output(self, output: OutputImage) -> CheckedImage:
        try:
            data = output.read()
        except OSError:
            raise UploadRejected("That output's file is no longer stored.") from None
        name = f"output {output.index + 1} of request {output.request_id}"
        checked = read_input_image(io.BytesIO(data), len(data), name, Role.SOURCE)
        return replace(checked, from_output=output)

    def _clean_size(self, data: dict) -> None:
        if data.get("size") != SOURCE_SIZE:
            super()._clean_size(data)
            return
        size = self._source_dimensions()
        if size is None:
            # A refused upload is the one problem to name: the size follows from the source.
            refused = any(self.errors.get(field) for field in ("source", "references", "mask"))
            if not self.for_preview and not refused:
                self.add_error("size", "Choose a source image, or a size.")
            return
        data["width"], data["height"] = imagerules.edit_output_size(*size)

    def _source_dimensions(self) -> tuple[int, int] | None:
        if self.checked_source is not None:
            return self.checked_source.width, self.checked_source.height
        if self.source_from_output is not None:
            return self.source_from_output.width, self.source_from_output.height
        if self.for_preview:
            sizes = self._client_sizes()
            return sizes[0] if sizes else None
        return None

    def _client_sizes(self) -> list[tuple[int, int]]:
        raw = str(self.data.get("input_sizes") or "") if self.is_bound else ""
        sizes = []
        for part in raw.split(",")[: imagerules.MAX_INPUT_IMAGES]:
            parsed = imagerules.parse_size(part)
            if parsed and 0 < parsed[0] <= MAX_CLIENT_EDGE and 0 < parsed[1] <= MAX_CLIENT_EDGE:
                sizes.append(parsed)
        return sizes

    def size_for_estimate(self, values: dict) -> tuple[int | None, int | None]:
        if values.get("size") == SOURCE_SIZE and not values.get("width"):
            size = self._source_dimensions()
            return imagerules.edit_output_size(*size) if size else (None, None)
        return super().size_for_estimate(values)

    def input_sizes_for_estimate(self) -> list[tuple[int, int]]:
        if self.checked_inputs:
            return [(i.width, i.height) for i in self.checked_inputs if i.role != Role.MASK]
        sizes = self._client_sizes()
        if self.source_from_output is not None:
            # The browser lists the source first when it measured one; from an output it
            # measured only the references.
            sizes = [(self.source_from_output.width, self.source_from_output.height), *sizes]
        return sizes

    def submission(self, user) -> dict:
        return {
            **super().submission(user),
            "inputs": self.checked_inputs,
            "parent_output": self.source_from_output,
        }


def initial_for_edit(
    frame: PromptFrame | None, output: OutputImage | None, generation=None, suggestion=None
) -> dict:
    """The edit page's starting values: a frame's settings, a request's, and the source;
    or a reviewer's suggested edit: its output, its region as the mask, its reason as the
    prompt, and the original's settings."""
    initial: dict = {}
    if suggestion is not None:
        output, generation = suggestion.output, suggestion.request
        initial = initial_from_request(generation)
        initial.pop("frame", None)
        initial.update(
            prompt=suggested_edit_prompt(suggestion.reason),
            region_decision=suggestion.pk,
            source_output=output.pk,
            size=SOURCE_SIZE,
            extra_labels="\n".join(generation.expected_text_labels),
        )
        initial.pop("width", None)
        initial.pop("height", None)
        return initial
    if generation is not None:
        initial.update(initial_from_request(generation))
    elif frame is not None:
        initial.update(initial_for_frame(frame))
    if output is not None:
        initial["source_output"] = output.pk
        initial.setdefault("output_format", output.format)
        # Text already in the source stays in the edit: it is checked again by default.
        initial.setdefault("extra_labels", "\n".join(output.request.expected_text_labels))
    initial["size"] = SOURCE_SIZE
    initial.pop("width", None)
    initial.pop("height", None)
    return initial


class TurnForm(forms.Form):
    """One message to the assistant."""

    message = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=imagerules.MAX_PROMPT_CHARS,
        help_text="Ask for an image or a change to the last one; quote text that must appear, "
        'e.g. "Spring Sale".',
    )
    extra_labels = extra_labels_field()

    def clean(self) -> dict:
        data = super().clean()
        data["extra_labels"] = clean_extra_labels(self)
        quoted = imagerules.quoted_labels(data.get("message") or "")
        for problem in imagerules.label_problems(quoted):
            self.add_error("message", problem)
        return data

    def expected_labels(self) -> list[str]:
        """The labels this message makes the turn expect (the one rule), for the preview."""
        message = self["message"].value() or ""
        return imagerules.expected_labels(
            message, imagerules.label_lines(self["extra_labels"].value() or "")
        )

    def estimate(self, route: Route | None, settings: dict) -> pricing.Estimate | None:
        """What the turn's image call is estimated at, as add_turn will record it (the
        route's one estimate rule); None without a route or a size."""
        if route is None or not settings.get("width") or not settings.get("quality"):
            return None
        return route.estimate(
            prompt=str(self["message"].value() or ""),
            width=settings["width"],
            height=settings["height"],
            quality=settings["quality"],
            partial_images=settings.get("partial_images") or 0,
        )


def title_from_message(message: str, limit: int = 60) -> str:
    """A conversation's title when none is given: the first line of its first message,
    cut at a word within `limit` characters."""
    line = next((part.strip() for part in message.splitlines() if part.strip()), "")
    if len(line) <= limit:
        return line or "Untitled conversation"
    cut = line[: limit - 1].rsplit(" ", 1)[0] or line[: limit - 1]
    return cut.rstrip(" ,.;:-") + "…"


class ConversationForm(TurnForm):
    """A new conversation: its title, route, the image tool's settings, the first message."""

    title = forms.CharField(
        max_length=200,
        required=False,
        help_text="Left empty, the start of your first message names the conversation.",
    )
    route = RouteChoiceField(queryset=Route.objects.none(), empty_label=None)
    size = forms.ChoiceField(choices=imagerules.SIZE_PRESETS, initial="1024x1024")
    quality = forms.ChoiceField(
        choices=[(q, q) for q in imagerules.QUALITIES if q != "auto"], initial="low"
    )
    output_format = forms.ChoiceField(
        choices=[(f, f.upper()) for f in imagerules.OUTPUT_FORMATS], initial="png"
    )
    partial_images = forms.IntegerField(
        label="Partial previews",
        min_value=0,
        max_value=3,
        initial=0,
        help_text="Each preview adds output tokens.",
    )

    field_order = ["title", "route", "size", "quality", "output_format", "partial_images"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only routes that can serve the Responses API are offered.
        routes = Route.objects.filter(enabled=True, supports_assistant=True)
        self.fields["route"].queryset = routes
        if "route" not in self.initial:
            self.initial["route"] = default_route(routes)

    def clean(self) -> dict:
        data = super().clean()
        route = data.get("route")
        if data.get("partial_images") and route and not route.supports_streaming:
            self.add_error("partial_images", f"Route {route.name} does not stream previews.")
        if not data.get("title") and data.get("message"):
            data["title"] = title_from_message(data["message"])
        return data

    def turn_settings(self) -> dict:
        """The image settings as chosen so far (for the estimate before sending)."""
        chosen = {}
        for name in ("size", "quality", "partial_images"):
            try:
                chosen[name] = self.fields[name].clean(self[name].value())
            except ValidationError:
                return {}
        width, height = imagerules.parse_size(chosen["size"])
        return {
            "width": width,
            "height": height,
            "quality": chosen["quality"],
            "partial_images": chosen["partial_images"] or 0,
        }

    def chosen_route(self) -> Route | None:
        """The route as chosen so far; unchosen, the one the page shows selected (the first)."""
        value = self["route"].value()
        if value in (None, ""):
            return self.fields["route"].queryset.first()
        try:
            return self.fields["route"].clean(value)
        except ValidationError:
            return None

    def start(self, owner) -> tuple[Conversation, GenerationRequest]:
        data = self.cleaned_data
        width, height = (int(edge) for edge in data["size"].split("x"))
        with transaction.atomic():  # a refused first turn (budget, flood) leaves nothing
            conversation = Conversation.objects.create(
                owner=owner,
                title=data["title"],
                route=data["route"],
                settings={
                    "width": width,
                    "height": height,
                    "quality": data["quality"],
                    "output_format": data["output_format"],
                    "partial_images": data["partial_images"] or 0,
                },
            )
            return conversation, conversation.add_turn(owner, data["message"], data["extra_labels"])


class GalleryFilter(forms.Form):
    """The filters of "My requests": search text (prompt or request ID), status, frame,
    review status, route and creation dates. Every field may be empty; a bad value is a
    form error shown by its field, never a 500."""

    VIEWS = ("grid", "table")

    q = forms.CharField(label="Search", required=False, max_length=200)
    status = forms.ChoiceField(required=False)
    frame = forms.ChoiceField(required=False)
    review = forms.ChoiceField(label="Review", required=False)
    route = forms.ModelChoiceField(
        queryset=Route.objects.order_by("name"), required=False, empty_label="Any route"
    )
    start = FilterDateField(label="From", required=False)
    end = FilterDateField(label="To", required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "Any status"), *Status.choices]
        self.fields["review"].choices = [("", "Any review"), *ReviewStatus.choices]
        frames = PromptFrame.objects.order_by("position", "name").values_list("key", "name")
        self.fields["frame"].choices = [("", "Any frame"), ("none", "No frame"), *frames]

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            self.add_error("end", "The end date is before the start date.")
        return data

    def apply(self, requests):
        """The requests that pass the valid filters (an invalid one filters nothing)."""
        self.is_valid()  # cleaned_data then holds the fields that are valid
        data = self.cleaned_data
        if text := data.get("q"):
            requests = requests.matching(text)
        if status := data.get("status"):
            requests = requests.filter(status=status)
        if frame := data.get("frame"):
            requests = (
                requests.filter(frame_version__isnull=True)
                if frame == "none"
                else requests.filter(frame_version__frame__key=frame)
            )
        if review := data.get("review"):
            requests = requests.with_review_status(review)
        if route := data.get("route"):
            requests = requests.filter(route=route)
        zone = timezone.get_current_timezone()
        if start := data.get("start"):
            requests = requests.filter(
                created_at__gte=timezone.make_aware(datetime.combine(start, time.min), zone)
            )
        if end := data.get("end"):
            requests = requests.filter(
                created_at__lt=timezone.make_aware(
                    datetime.combine(end + timedelta(days=1), time.min), zone
                )
            )
        return requests

    def query(self, **changes) -> str:
        """The filters as a query string, with some values changed (None drops one)."""
        values = {name: self.data.get(name, "") for name in [*self.fields, "view"]}
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})
