"""Celery helpers: a ready ``purge_expired`` task for beat, and idempotency keys for retried tasks.

.. code-block:: python

   from celery import Celery
   from agents_persist import AgentMessage, from_url
   from agents_persist.celery import beat_entry, make_purge_task, task_idempotency_key

   app = Celery("tasks", broker="redis://localhost:6379/1")
   checkpointer = from_url("redis://localhost:6379/0", ttl=86400)  # at import: fork-safe

   @app.task(bind=True, acks_late=True)
   def add_message(self, thread_id, text):
       checkpointer.update(thread_id, lambda s: s.messages.append(AgentMessage.user(text)),
                           idempotency_key=task_idempotency_key(self))

   purge = make_purge_task(app, checkpointer)
   app.conf.beat_schedule = {"agents-persist-purge": beat_entry(purge, every=3600)}

Needs Celery (``pip install "agents_persist[celery]"``); ``import agents_persist``
never imports it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Union

from .extras import missing_extra

try:
    import celery  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without celery
    raise missing_extra("agents_persist.celery", "Celery", "celery", exc) from exc

from .arguments import MAX_IDEMPOTENCY_KEY_LENGTH
from .checkpointer import Checkpointer

__all__ = ["make_purge_task", "task_idempotency_key", "beat_entry", "PURGE_TASK_NAME"]

#: Default name of the task :func:`make_purge_task` registers.
PURGE_TASK_NAME = "agents_persist.purge_expired"
_KEY_PREFIX = "celery:"


def make_purge_task(
    app: Any,
    checkpointer: Union[Checkpointer, Callable[[], Checkpointer]],
    *,
    name: str = PURGE_TASK_NAME,
    **task_options: Any,
) -> Any:
    """Register on ``app`` a task that runs ``checkpointer.purge_expired()`` and returns how many threads it removed.

    Schedule it with Celery beat (see :func:`beat_entry`); it is safe to run
    twice or concurrently (purging is idempotent). On Redis, whose keys
    expire by themselves, it only tidies the listing index.

    Args:
        app: The Celery app.
        checkpointer: The checkpointer, or a function returning it (called in
            the worker each time the task runs, for lazily built ones such as
            ``lambda: checkpointers["default"]`` in Django).
        name: The task's name.
        **task_options: More options for ``app.task`` (``queue``, ``time_limit``, ...).

    Returns:
        The registered task.
    """

    def purge_expired() -> int:
        target = checkpointer if isinstance(checkpointer, Checkpointer) else checkpointer()
        return target.purge_expired()

    purge_expired.__doc__ = "Delete expired agents_persist threads now; return how many were removed."
    return app.task(name=name, **task_options)(purge_expired)


def task_idempotency_key(task: Any) -> str:
    """The ``idempotency_key`` for ``update()``/``append()`` in a bound task: ``"celery:<task id>"``.

    A task that is retried (``self.retry()``, ``acks_late`` redelivery after a
    worker died, a ``maybe_applied`` :class:`~agents_persist.BackendUnavailableError`)
    keeps its ID, so its change is applied once however often it runs.

    Raises:
        ValueError: Called outside a running task (no request ID).
    """
    task_id = getattr(getattr(task, "request", None), "id", None)
    if not task_id:
        raise ValueError("task_idempotency_key needs a bound task that is running (task.request.id is empty)")
    return (_KEY_PREFIX + str(task_id))[:MAX_IDEMPOTENCY_KEY_LENGTH]


def beat_entry(task: Any, *, every: float = 3600.0, **options: Any) -> Dict[str, Any]:
    """A ``beat_schedule`` entry running ``task`` every ``every`` seconds (``options`` go to the entry's ``options``)."""
    entry: Dict[str, Any] = {"task": task.name, "schedule": float(every)}
    if options:
        entry["options"] = options
    return entry
