from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from studio import views as studio_views

urlpatterns = [
    path("", include("studio.urls")),
    path("review/", include("review.urls")),
    path("audit/", include("review.audit_urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", studio_views.healthz, name="healthz"),
]
if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/v1/", include("studio.sandbox.urls")))
