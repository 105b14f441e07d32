from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from api.rest import api as rest_api
from studio import views as studio_views
from studio.forms import LoginForm

urlpatterns = [
    path("", include("studio.urls")),
    path("review/", include("review.urls")),
    path("audit/", include("review.audit_urls")),
    path("campaigns/", include("campaigns.urls")),
    path("settings/tokens/", include("api.urls")),
    path("settings/webhooks/", include("api.webhook_urls")),
    # OpenAI's SDKs with base_url=<studio>/v1 and a studio API token (api/door.py).
    path("v1/", include("api.door_urls")),
    path("api/", rest_api.urls),
    # Log in, log out and change a password; no e-mailed reset (there is no mail set up).
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=LoginForm),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("admin/", admin.site.urls),
    path("healthz", studio_views.healthz, name="healthz"),
    path("favicon.ico", studio_views.favicon, name="favicon"),
]
# In production the sandbox runs as its own process (config/sandbox_urls.py); the web
# process serves it only when asked to (SANDBOX_IN_WEB, on in development).
if settings.SANDBOX_ENABLED and settings.SANDBOX_IN_WEB:
    urlpatterns.append(path("sandbox/v1/", include("studio.sandbox.urls")))
