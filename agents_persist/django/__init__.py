"""Django integration: ``checkpointers["default"]`` from the ``AGENTS_PERSIST`` setting, system checks, a command.

.. code-block:: python

   # settings.py
   INSTALLED_APPS = [..., "agents_persist.django"]
   AGENTS_PERSIST = {"default": {"URL": "redis://localhost:6379/0", "OPTIONS": {"ttl": 86400}}}

   # views.py
   from agents_persist.django import checkpointers

   checkpointers["default"].update(thread_id, fn)

Needs Django (``pip install "agents_persist[django]"``); ``import agents_persist``
never imports it.
"""

from __future__ import annotations

from ..extras import missing_extra

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without django
    raise missing_extra("agents_persist.django", "Django", "django", exc) from exc

from .handler import CheckpointerHandler, checkpointers

__all__ = ["checkpointers", "CheckpointerHandler"]
