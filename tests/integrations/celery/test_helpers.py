"""agents_persist.celery's helpers in-process (the worker itself: tests/examples/test_celery_worker.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery import Celery

from agents_persist import AgentStateSnapshot, InMemoryCheckpointer
from agents_persist.celery import PURGE_TASK_NAME, beat_entry, make_purge_task, task_idempotency_key


def test_purge_task_runs_eagerly_with_a_checkpointer_or_a_factory() -> None:
    app = Celery("ap_helpers", set_as_current=False)
    app.conf.task_always_eager = True
    with InMemoryCheckpointer(ttl=60) as cp:
        cp.save("t", AgentStateSnapshot())
        direct = make_purge_task(app, cp)
        lazy = make_purge_task(app, lambda: cp, name="lazy_purge", time_limit=30)
        assert direct.name == PURGE_TASK_NAME and lazy.name == "lazy_purge" and lazy.time_limit == 30
        assert direct.delay().get() == 0 and lazy.apply().get() == 0
        assert cp.exists("t")


def test_idempotency_key_is_the_task_id() -> None:
    assert task_idempotency_key(SimpleNamespace(request=SimpleNamespace(id="abc-123"))) == "celery:abc-123"
    assert len(task_idempotency_key(SimpleNamespace(request=SimpleNamespace(id="x" * 500)))) == 200
    with pytest.raises(ValueError, match="bound task"):
        task_idempotency_key(SimpleNamespace(request=SimpleNamespace(id=None)))


def test_beat_entry() -> None:
    task = SimpleNamespace(name=PURGE_TASK_NAME)
    assert beat_entry(task) == {"task": PURGE_TASK_NAME, "schedule": 3600.0}
    assert beat_entry(task, every=60, queue="q") == {"task": PURGE_TASK_NAME, "schedule": 60.0, "options": {"queue": "q"}}
