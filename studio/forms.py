from __future__ import annotations

import re
from dataclasses import dataclass, field

from django import forms

from studio import imagerules, pricing
from studio.models import (
    DEFAULT_MODEL,
    Budget,
    GenerationRequest,
    PromptFrame,
    RenderedPrompt,
    Route,
    SlotErrors,
)

CUSTOM_SIZE = "custom"
SLOT_PREFIX = "slot_"
QUOTED = re.compile(r'"([^"\n]{1,200})"|“([^”\n]{1,200})”')


def quoted_labels(prompt: str) -> list[str]:
    """Words a free prompt quotes: the text that must appear in the image."""
    return [first or second for first, second in QUOTED.findall(prompt)]


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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rendered: RenderedPrompt | None = None
        self.fields["frame"].queryset = PromptFrame.objects.active()
        routes = Route.objects.filter(enabled=True)
        self.fields["route"].queryset = routes
        if "route" not in self.initial:
            sandbox = next((route for route in routes if route.is_sandbox), None)
            self.initial["route"] = sandbox.pk if sandbox else None
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
        self._clean_prompt(data)
        self._clean_size(data)
        output_format = data.get("output_format")
        if data.get("output_compression") is not None and output_format == "png":
            self.add_error(
                "output_compression",
                "Compression applies only to JPEG and WebP; leave it empty for PNG.",
            )
        route = data.get("route")
        if data.get("background") == "transparent" and route and not route.supports_transparent:
            self.add_error(
                "background",
                f"gpt-image-2 on route {route.name} does not support a transparent background. "
                "Choose auto or opaque and remove the background in post-processing, or use a "
                "route that declares transparent support.",
            )
        data["partial_images"] = data.get("partial_images") or 0
        if data["partial_images"]:
            self.add_error(
                "partial_images",
                "Streamed partial previews are not available in this studio yet; set 0.",
            )
        return data

    def _clean_prompt(self, data: dict) -> None:
        frame = data.get("frame")
        if frame is None:
            prompt = (data.get("prompt") or "").strip()
            if not prompt:
                self.add_error("prompt", "Write a prompt, or choose a frame and fill its slots.")
                return
            self.rendered = RenderedPrompt(prompt, quoted_labels(prompt))
        else:
            if frame.operation == PromptFrame.Operation.EDIT:
                self.add_error(
                    "frame",
                    f"The {frame.name} frame edits an existing image, and edits with source "
                    "images are not available in this studio yet. Choose a generation frame.",
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
        if len(self.rendered.prompt) > imagerules.MAX_PROMPT_CHARS:
            self.add_error(
                "prompt" if frame is None else None,
                f"The prompt is {len(self.rendered.prompt):,} characters; gpt-image-2 accepts "
                f"at most {imagerules.MAX_PROMPT_CHARS:,}.",
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
        for problem in imagerules.size_problems(width, height):
            self.add_error("size" if size != CUSTOM_SIZE else "width", problem)
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
            labels=self.rendered.expected_text_labels if self.rendered else [],
            problems=problems,
            route=values.get("route"),
        )
        # Partial previews are priced even while the form refuses them.
        try:
            partial_images = self.fields["partial_images"].clean(self["partial_images"].value())
        except forms.ValidationError:
            partial_images = 0
        settings = [values.get(name) for name in ("width", "height", "quality", "n")]
        if preview.route and all(settings):
            preview.estimate = preview.route.estimate(
                prompt=preview.prompt or "",
                width=int(values["width"]),
                height=int(values["height"]),
                quality=values["quality"],
                n=int(values["n"]),
                partial_images=partial_images or 0,
            )
        return preview

    def submit(self, user) -> GenerationRequest:
        """Create and queue the request (raises BudgetExceeded, creating nothing)."""
        data = self.cleaned_data
        slot_values = {
            bound.field.slot.name: data.get(bound.name, "") for bound in self.slot_fields()
        }
        return GenerationRequest.submit(
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
            expected_text_labels=self.rendered.expected_text_labels,
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
    }
    frame = generation.frame_version.frame if generation.frame_version_id else None
    if frame is not None and frame.is_active:
        initial["frame"] = frame.pk
        initial.update({SLOT_PREFIX + k: v for k, v in generation.slot_values.items()})
    else:
        initial["prompt"] = generation.prompt
    return {key: value for key, value in initial.items() if value is not None}
