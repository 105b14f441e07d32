from __future__ import annotations

from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """The sandbox is an app of its own for its stored responses and its deploy check."""

    name = "studio.sandbox"
    label = "sandbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from studio.sandbox import checks  # noqa: F401  (registers the checks)
