from __future__ import annotations

import re
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.urls import reverse
from django.utils.html import format_html

from studio.forms import AdminLoginForm
from studio.models import (
    Attempt,
    Budget,
    Conversation,
    GenerationRequest,
    OutputImage,
    PriceSheet,
    PromptFrame,
    PromptFrameVersion,
    Route,
)

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Shapes of API keys pasted where the variable's NAME belongs: refuse to store them.
KEY_LIKE = re.compile(r"^(sk-|sk_|Bearer\s)|.{40,}")


class RouteForm(forms.ModelForm):
    base_url = forms.URLField(
        required=False,
        max_length=200,
        assume_scheme="https",
        help_text=Route._meta.get_field("base_url").help_text,
    )

    class Meta:
        model = Route
        fields = [
            "name",
            "owner",
            "base_url",
            "api_key_env",
            "model_map",
            "pricing_mode",
            "price_per_call",
            "enabled",
            "timeout_seconds",
            "max_attempts",
            "timeout_retries",
            "fallback",
            "retention_days",
            "supports_edits",
            "supports_masks",
            "supports_assistant",
            "supports_streaming",
            "supports_transparent",
            "assistant_model",
        ]
        widgets = {"model_map": forms.Textarea(attrs={"rows": 3, "cols": 60})}

    def clean_api_key_env(self) -> str:
        name = self.cleaned_data["api_key_env"].strip()
        if name and KEY_LIKE.search(name):
            raise forms.ValidationError(
                "This looks like a key, not the name of a variable. Put the key in the "
                "environment of the web and worker processes and write its variable's name here."
            )
        if name and not ENV_NAME.match(name):
            raise forms.ValidationError(
                "A variable name: letters, digits and _, e.g. OPENAI_API_KEY."
            )
        return name

    def clean_model_map(self) -> dict:
        mapping = self.cleaned_data["model_map"] or {}
        if not isinstance(mapping, dict) or not all(
            isinstance(key, str) and key.strip() and isinstance(value, str) and value.strip()
            for key, value in mapping.items()
        ):
            raise forms.ValidationError(
                'Write an object of model names, requested -> sent: {"gpt-image-2": "gpt-image-2"}.'
            )
        return {key.strip(): value.strip() for key, value in mapping.items()}

    def clean_fallback(self):
        fallback = self.cleaned_data["fallback"]
        if fallback is not None and self.instance.pk and fallback.pk == self.instance.pk:
            raise forms.ValidationError("A route cannot be its own fallback.")
        return fallback


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    """Routes are contracts: who bills, where calls go, what they cost and what they can do.

    The API key itself is never stored or shown: only the name of its environment variable
    and whether that variable is set in this web process.
    """

    form = RouteForm
    list_display = [
        "name",
        "owner",
        "enabled",
        "readiness",
        "key_variable",
        "pricing",
        "model_mapping",
        "timeout_seconds",
        "max_attempts",
        "fallback",
        "capabilities",
        "audit_link",
    ]
    list_filter = ["enabled", "owner", "pricing_mode"]
    search_fields = ["name", "owner", "base_url"]
    readonly_fields = ["key_status", "pricing", "readiness", "audit_link"]
    fieldsets = [
        ("Contract", {"fields": ["name", "owner", "base_url", "api_key_env", "key_status"]}),
        (
            "Model mapping",
            {
                "fields": ["model_map"],
                "description": "What the studio sends for each requested model. "
                "Attempts record both names.",
            },
        ),
        ("Pricing", {"fields": ["pricing_mode", "price_per_call", "pricing"]}),
        (
            "Calls",
            {
                "fields": [
                    "enabled",
                    "readiness",
                    "timeout_seconds",
                    "max_attempts",
                    "timeout_retries",
                    "fallback",
                    "retention_days",
                ]
            },
        ),
        (
            "Capabilities",
            {
                "fields": [
                    "supports_edits",
                    "supports_masks",
                    "supports_assistant",
                    "assistant_model",
                    "supports_streaming",
                    "supports_transparent",
                ]
            },
        ),
        ("Audit", {"fields": ["audit_link"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("fallback")

    @admin.display(description="API key variable")
    def key_variable(self, route: Route) -> str:
        if not route.api_key_env:
            return "none needed (sandbox)" if route.is_sandbox else "none named"
        if route.api_key():
            return f"{route.api_key_env} (set)"
        optional = "; optional for the sandbox" if route.is_sandbox else ""
        return f"{route.api_key_env} (not set{optional})"

    @admin.display(description="Key")
    def key_status(self, route: Route) -> str:
        if not route.api_key_env:
            return "No variable named." + (" The sandbox needs none." if route.is_sandbox else "")
        if route.api_key():
            return f"{route.api_key_env} is set in this web process's environment."
        if route.is_sandbox:
            return (
                f"{route.api_key_env} is not set in this web process's environment: the "
                "sandbox answers without a key."
            )
        return (
            f"{route.api_key_env} is not set in this web process's environment; set it for the "
            "web and worker processes before enabling the route."
        )

    @admin.display(description="Pricing")
    def pricing(self, route: Route) -> str:
        return route.pricing_label

    @admin.display(description="Ready?")
    def readiness(self, route: Route) -> str:
        return route.configuration_problem() or "ready"

    @admin.display(description="Model mapping (requested → sent)")
    def model_mapping(self, route: Route) -> str:
        mapping = route.model_map or {}
        if not mapping:
            return "sent as requested"
        return ", ".join(f"{requested} → {sent}" for requested, sent in sorted(mapping.items()))

    @admin.display(description="Capabilities")
    def capabilities(self, route: Route) -> str:
        names = [
            name
            for name in ("edits", "masks", "assistant", "streaming", "transparent")
            if getattr(route, f"supports_{name}")
        ]
        return ", ".join(names) or "generation only"

    @admin.display(description="Attempts")
    def audit_link(self, route: Route) -> str:
        if route.pk is None:
            return "—"
        query = urlencode({"route": route.name, "start": "", "end": ""})
        url = f"{reverse('audit:attempts')}?{query}"
        return format_html('<a href="{}">Attempts on this route (all time)</a>', url)


@admin.register(PriceSheet)
class PriceSheetAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "effective_from",
        "text_input",
        "image_input",
        "image_output",
        "text_output",
    ]


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = [
        "number",
        "route_owner",
        "model_sent",
        "provider_request_id",
        "http_status",
        "outcome",
        "retry_reason",
        "latency_ms",
        "output_image_tokens",
        "cost",
        "cost_basis",
        "exposure",
        "billing_note",
        "usage_shape",
        "raw_usage",
        "error_message",
    ]
    readonly_fields = fields


@admin.register(GenerationRequest)
class GenerationRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "created_by", "created_at", "status", "route", "size", "quality", "cost"]
    list_filter = ["status", "route", "quality"]
    search_fields = ["id", "prompt", "created_by__username"]
    readonly_fields = [f.name for f in GenerationRequest._meta.fields]
    inlines = [AttemptInline]

    def has_add_permission(self, request) -> bool:
        return False  # requests are submitted by designers, never typed into the admin

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the ledger: requests and their attempts are the audit's record


@admin.register(OutputImage)
class OutputImageAdmin(admin.ModelAdmin):
    list_display = ["id", "request", "kind", "index", "width", "height", "format", "bytes"]
    readonly_fields = [f.name for f in OutputImage._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # outputs come from the pipeline; a form of read-only fields adds nothing


class PromptFrameVersionInline(admin.TabularInline):
    model = PromptFrameVersion
    extra = 0
    can_delete = False
    fields = ["number", "created_at", "name", "recommended_size", "recommended_quality"]
    readonly_fields = fields
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PromptFrame)
class PromptFrameAdmin(admin.ModelAdmin):
    """Saving a changed frame freezes a new version; requests keep the one they used."""

    list_display = [
        "name",
        "key",
        "operation",
        "is_active",
        "position",
        "updated_at",
        "analytics",
    ]
    list_filter = ["is_active", "operation"]
    prepopulated_fields = {"key": ["name"]}
    inlines = [PromptFrameVersionInline]
    readonly_fields = ["analytics"]

    @admin.display(description="Analytics")
    def analytics(self, frame: PromptFrame) -> str:
        if frame.pk is None:
            return "—"
        url = f"{reverse('audit:frames')}?{urlencode({'frame': frame.key})}"
        return format_html('<a href="{}">Review and cost figures</a>', url)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["__str__", "scope", "user", "monthly_limit"]
    list_filter = ["scope"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "route", "created_at", "last_response_id"]
    list_select_related = ["owner", "route"]
    readonly_fields = ["last_response_id", "created_at"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deleting one would delete its turns' requests from the ledger


class BoundedDateChangeList(ChangeList):
    """Django's date hierarchy adds a day, a month or a year to the date in the URL; at
    ?…__year=9999&…__month=12 that overflows into a 500. Such a date is a bad lookup, which
    the admin answers like any other (the list again, with ?e=1)."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error


def _bound_date_lookups(site: admin.AdminSite) -> None:
    """Every list in the admin, django-axes' included (registered before this module runs)."""
    for model_admin in site._registry.values():
        model_admin.get_changelist = lambda request, **kwargs: BoundedDateChangeList


_bound_date_lookups(admin.site)
admin.site.login_form = AdminLoginForm
