from __future__ import annotations

import base64
import binascii
import io

from django import forms
from django.core.files.base import ContentFile

from review.models import TextInspection
from studio.uploads import UNREADABLE, TooManyPixels, UploadRejected, eight_bit, open_header

MAX_REGION_BYTES = 8 * 1024 * 1024


class DecisionForm(forms.Form):
    """One form, three named buttons: approve, reject, request_changes."""

    ACTIONS = {
        "approve": "approved",
        "reject": "rejected",
        "request_changes": "changes_requested",
    }

    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required to reject or request changes; the designer sees it.",
    )
    override_reason = forms.CharField(
        required=False,
        label="Override reason",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Only to approve while a label is recorded wrong or missing: why this text "
        "may go out as it is. Shown in the queue, the request page and the audit.",
    )
    region = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, output=None, action: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.output = output
        self.action = action

    def clean(self) -> dict:
        data = super().clean()
        if self.action not in self.ACTIONS:
            raise forms.ValidationError("Choose approve, reject or request changes.")
        data["verdict"] = self.ACTIONS[self.action]
        data["region_mask"] = None
        if data.get("region") and data["verdict"] == "changes_requested":
            data["region_mask"] = self._region_mask(data["region"])
        return data

    def _region_mask(self, data_url: str) -> ContentFile:
        """The drawn region as a PNG mask at the output's size (transparent = change here)."""
        prefix = "data:image/png;base64,"
        if not data_url.startswith(prefix) or len(data_url) > MAX_REGION_BYTES * 4 // 3:
            raise forms.ValidationError({"region": "The drawn region must be a PNG."})
        try:
            raw = base64.b64decode(data_url[len(prefix) :], validate=True)
        except (binascii.Error, ValueError):
            raise forms.ValidationError(
                {"region": "The drawn region is not a readable PNG."}
            ) from None
        expected = (self.output.width, self.output.height)
        want = "x".join(map(str, expected))
        try:
            image = open_header(raw, ("PNG",))
        except TooManyPixels as bomb:
            raise forms.ValidationError(
                {"region": f"The region must be {want}; it claims {bomb.pixels:,} pixels."}
            ) from None
        except UploadRejected:
            raise forms.ValidationError(
                {"region": "The drawn region is not a readable PNG."}
            ) from None
        with image:
            # The size comes from the header: nothing is decoded unless it is the output's.
            if image.size != expected:
                got = "x".join(map(str, image.size))
                raise forms.ValidationError({"region": f"The region must be {want}; it is {got}."})
            try:
                image.load()
                mask = eight_bit(image).convert("RGBA")
            except UNREADABLE:
                raise forms.ValidationError(
                    {"region": "The drawn region is not a readable PNG."}
                ) from None
        buffer = io.BytesIO()
        mask.save(buffer, "PNG")
        return ContentFile(buffer.getvalue(), name=f"{self.output.id}-region.png")


class InspectionForm(forms.Form):
    """One row per expected label: what the image shows and a verdict; plus a typed label
    when the request expected none."""

    new_label = forms.CharField(
        required=False,
        max_length=500,
        label="Another label",
        help_text="Text the image shows that should be checked, if the request listed none.",
    )
    new_observed = forms.CharField(required=False, max_length=500, label="It reads")
    new_verdict = forms.ChoiceField(
        required=False, choices=[("", "—"), *TextInspection.Verdict.choices], label="Verdict"
    )

    def __init__(self, *args, labels: list[str], suggestions=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.labels = labels
        by_label = {s.label: s for s in suggestions or []}
        for index, label in enumerate(labels):
            suggestion = by_label.get(label)
            self.fields[f"observed_{index}"] = forms.CharField(
                required=False,
                max_length=500,
                label=label,
                initial=suggestion.observed if suggestion else "",
            )
            self.fields[f"verdict_{index}"] = forms.ChoiceField(
                choices=TextInspection.Verdict.choices,
                widget=forms.RadioSelect,
                initial=suggestion.verdict if suggestion else None,
                label="Verdict",
            )
            self.fields[f"source_{index}"] = forms.ChoiceField(
                choices=TextInspection.Source.choices,
                widget=forms.HiddenInput,
                initial="ocr" if suggestion else "manual",
            )

    def rows(self) -> list[dict]:
        return [
            {
                "label": label,
                "observed": self[f"observed_{index}"],
                "verdict": self[f"verdict_{index}"],
                "source": self[f"source_{index}"],
            }
            for index, label in enumerate(self.labels)
        ]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("new_label") and not data.get("new_verdict"):
            self.add_error("new_verdict", "Give a verdict for the label you added.")
        if data.get("new_verdict") and not data.get("new_label"):
            self.add_error("new_label", "Type the label the verdict is about.")
        for index in range(len(self.labels)):
            verdict, observed = data.get(f"verdict_{index}"), data.get(f"observed_{index}", "")
            if verdict == "exact" and observed != self.labels[index]:
                self.add_error(
                    f"verdict_{index}",
                    "“Exact” means the image reads exactly the expected text; fix what it reads "
                    "or choose “wrong”.",
                )
        return data

    def inspections(self) -> list[tuple[str, str, str, str]]:
        """(label, observed, verdict, source) for every row to record."""
        data = self.cleaned_data
        rows = [
            (label, data.get(f"observed_{i}", ""), data[f"verdict_{i}"], data[f"source_{i}"])
            for i, label in enumerate(self.labels)
        ]
        if data.get("new_label"):
            rows.append(
                (data["new_label"], data.get("new_observed", ""), data["new_verdict"], "manual")
            )
        return rows
