from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def check_sandbox_key(app_configs, **kwargs) -> list[Error]:
    """In production the sandbox answers only SANDBOX_API_KEY; without one it answers nobody."""
    if settings.SANDBOX_ENABLED and settings.SANDBOX_KEY_REQUIRED and not settings.SANDBOX_API_KEY:
        return [
            Error(
                "The sandbox is enabled (SANDBOX_ENABLED=1) with DEBUG off but SANDBOX_API_KEY "
                "is not set: it refuses every call (401) until it is.",
                hint="Set SANDBOX_API_KEY to a long random secret for the sandbox process and "
                "the workers (the sandbox route sends it), or set SANDBOX_ENABLED=0.",
                id="studio.E001",
            )
        ]
    return []
