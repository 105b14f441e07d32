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
