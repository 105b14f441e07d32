"""The URLconf of the sandbox process (SANDBOX_PROCESS=1): the sandbox and /healthz only."""

from __future__ import annotations

from django.urls import include, path

from studio import views as studio_views

urlpatterns = [
    path("sandbox/v1/", include("studio.sandbox.urls")),
    path("healthz", studio_views.healthz, name="healthz"),
]
