from __future__ import annotations

from django.contrib import admin

from studio.models import (
    Attempt,
    Budget,
    GenerationRequest,
    OutputImage,
    PriceSheet,
    PromptFrame,
    PromptFrameVersion,
    Route,
)


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "owner",
        "enabled",
        "pricing_mode",
        "price_per_call",
        "timeout_seconds",
        "fallback",
    ]
    list_filter = ["enabled", "owner", "pricing_mode"]


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
    ]
    readonly_fields = fields


@admin.register(GenerationRequest)
class GenerationRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "created_by", "created_at", "status", "route", "size", "quality", "cost"]
    list_filter = ["status", "route", "quality"]
    search_fields = ["id", "prompt", "created_by__username"]
    readonly_fields = [f.name for f in GenerationRequest._meta.fields]
    inlines = [AttemptInline]


@admin.register(OutputImage)
class OutputImageAdmin(admin.ModelAdmin):
    list_display = ["id", "request", "kind", "index", "width", "height", "format", "bytes"]
    readonly_fields = [f.name for f in OutputImage._meta.fields]


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

    list_display = ["name", "key", "operation", "is_active", "position", "updated_at"]
    list_filter = ["is_active", "operation"]
    prepopulated_fields = {"key": ["name"]}
    inlines = [PromptFrameVersionInline]


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["__str__", "scope", "user", "monthly_limit"]
    list_filter = ["scope"]
