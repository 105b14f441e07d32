from __future__ import annotations

from django.urls import path

from review import audit_views

app_name = "audit"
urlpatterns = [
    path("", audit_views.dashboard, name="dashboard"),
    path("attempts/", audit_views.attempts, name="attempts"),
    path("frames/", audit_views.frames, name="frames"),
    path("attempts.csv", audit_views.export, name="export"),
]
