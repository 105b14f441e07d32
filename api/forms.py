from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

EXPIRY_CHOICES = [("30", "30 days"), ("90", "90 days"), ("365", "1 year"), ("never", "Never")]


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What the token is for, e.g. 'Nightly banner script'."
    )
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="90", label="Expires after")

    def expires_at(self):
        raw = self.cleaned_data["expires"]
        return None if raw == "never" else timezone.now() + timedelta(days=int(raw))


class WebhookForm(forms.Form):
    url = forms.URLField(
        max_length=500,
        label="URL",
        assume_scheme="https",
        help_text="Where the studio POSTs events (http or https, not the studio itself).",
    )
    events = forms.MultipleChoiceField(
        choices=[
            ("request.finished", "A request of mine finished"),
            ("review.decided", "A reviewer decided on one of my outputs"),
        ],
        widget=forms.CheckboxSelectMultiple,
        initial=["request.finished", "review.decided"],
    )

    def __init__(self, *args, studio_hosts: list[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.studio_hosts = list(studio_hosts)

    def clean_url(self) -> str:
        from api.webhooks import url_problem

        url = self.cleaned_data["url"]
        problem = url_problem(url, self.studio_hosts)
        if problem:
            raise forms.ValidationError(problem, code="refused_url")
        return url
