"""The app config of ``agents_persist.django``: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class AgentsPersistConfig(AppConfig):  # type: ignore[misc]
    """``INSTALLED_APPS = [..., "agents_persist.django"]``; opens nothing when loaded."""

    name = "agents_persist.django"
    label = "agents_persist"
    verbose_name = "agents_persist"

    def ready(self) -> None:
        from .checks import check_settings

        checks.register(check_settings)
