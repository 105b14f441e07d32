from __future__ import annotations

from django.contrib import admin

from campaigns.models import Campaign


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    """Read-only: a campaign's rows are requests, changed only through their own rules."""

    list_display = ("name", "owner", "route", "row_count", "estimated_cost", "status", "created_at")
    list_filter = ("status", "route")
    search_fields = ("name", "owner__username")
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
