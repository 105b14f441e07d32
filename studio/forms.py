from __future__ import annotations

from django import forms

from studio import imagerules
from studio.models import Route

CUSTOM_SIZE = "custom"


class GenerationForm(forms.Form):
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        max_length=imagerules.MAX_PROMPT_CHARS,
        help_text='Quote every word that must appear in the image, e.g. "Spring Sale".',
    )
    route = forms.ModelChoiceField(queryset=Route.objects.none(), empty_label=None)
    size = forms.ChoiceField(
        choices=[*imagerules.SIZE_PRESETS, (CUSTOM_SIZE, "Custom width x height")],
        initial="1024x1024",
    )
    width = forms.IntegerField(required=False, min_value=16, max_value=imagerules.MAX_EDGE)
    height = forms.IntegerField(required=False, min_value=16, max_value=imagerules.MAX_EDGE)
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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        routes = Route.objects.filter(enabled=True)
        self.fields["route"].queryset = routes
        sandbox = routes.filter(owner="sandbox").first()
        if sandbox is not None:
            self.fields["route"].initial = sandbox.pk

    def clean(self) -> dict:
        data = super().clean()
        size = data.get("size")
        if size == CUSTOM_SIZE:
            width, height = data.get("width"), data.get("height")
            if width is None or height is None:
                self.add_error("width", "Enter both width and height for a custom size.")
                return data
        elif size:
            width, height = imagerules.parse_size(size)
        else:
            return data
        for problem in imagerules.size_problems(width, height):
            self.add_error("size" if size != CUSTOM_SIZE else "width", problem)
        data["width"], data["height"] = width, height

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
                "Choose auto or opaque, then remove the background in post-processing, or use a "
                "route that declares transparent support.",
            )
        return data
