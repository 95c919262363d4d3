"""``agents-persist doctor URL``: can this store be used, and how fast does it answer?

Four checks, each explained in plain words: the URL builds a checkpointer
(driver installed, options valid), the store answers a listing (it is
reachable, its schema exists and this user may read it), and a save, a load
and a delete of a unique scratch thread (``agents-persist-doctor-<random>``)
work, each timed. The scratch thread is deleted even when a step fails. The
exit code is that of the first failure (see docs/cli.rst), 0 when all pass.
A ``sqlite://`` URL whose file does not exist fails at once (exit code 3):
doctor never creates a store.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from typing import Callable, List, NoReturn, Optional, TypeVar

from ..checkpointer import Checkpointer
from ..errors import AgentsPersistError
from ..models import AgentMessage, AgentStateSnapshot
from ..redaction import scrub
from ..urls import from_url, redact_url
from ._common import FAILED, NOT_FOUND, describe, exit_code_for, say, sqlite_path

__all__ = ["cmd_doctor"]

T = TypeVar("T")

_HINTS = {
    "ConfigurationError": "the URL or its options are wrong, or the backend's driver is not installed",
    "BackendUnavailableError": "the server did not answer: is it running, is the host/port right, is a firewall in the way?",
    "ConflictError": "another writer changed the scratch thread at the same moment (unlikely); run doctor again",
}


class _Doctor:
    def __init__(self) -> None:
        self.failures: List[int] = []

    def check(self, label: str, step: Callable[[], T]) -> Optional[T]:
        """Run one step; print ``ok`` with its latency or ``FAILED`` with what it means."""
        started = time.perf_counter()
        try:
            result = step()
        except (AgentsPersistError, OSError) as exc:
            if isinstance(exc, AgentsPersistError):
                code, text = exit_code_for(exc), describe(exc)
            else:
                code, text = FAILED, scrub(f"{type(exc).__name__}: {exc}")
            self.failures.append(code)
            say(f"  FAILED  {label}: {text}")
            hint = _HINTS.get(type(exc).__name__)
            if hint:
                say(f"          ({hint})")
            return None
        say(f"  ok      {label} ({(time.perf_counter() - started) * 1000:.1f} ms)")
        return result


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the store at ``URL`` (the positional argument, else ``--url``)."""
    url: str = args.target or args.url
    say(f"agents-persist doctor: {redact_url(url)}")
    doctor = _Doctor()
    path = sqlite_path(url)
    if path is not None and not os.path.exists(path):
        say(f"  FAILED  there is no SQLite file {path} (doctor does not create one; the first save would)")
        say("some checks failed; the store is not usable as configured")
        return NOT_FOUND
    checkpointer = doctor.check("the URL builds a checkpointer (driver installed, options valid)", lambda: from_url(url))
    if checkpointer is not None:
        with checkpointer:
            _round_trip(doctor, checkpointer)
    if doctor.failures:
        say("some checks failed; the store is not usable as configured")
        return doctor.failures[0]
    say("all checks passed")
    return 0


def _round_trip(doctor: _Doctor, checkpointer: Checkpointer) -> None:
    reachable = doctor.check(
        "the store answers a listing (reachable, schema present, read permission)",
        lambda: checkpointer.list_threads(limit=1),
    )
    if reachable is None:
        return
    scratch = f"agents-persist-doctor-{uuid.uuid4().hex}"
    state = AgentStateSnapshot(messages=[AgentMessage.user("doctor check")], metadata={"n": 1, "x": 0.5})
    try:
        saved = doctor.check(f"save a scratch thread {scratch!r} (write permission)", lambda: checkpointer.save(scratch, state))
        if saved is None:
            return
        loaded = doctor.check("load it back", lambda: checkpointer.load(scratch) or _missing(scratch, "load"))
        if loaded is not None and not loaded == state:  # not `!=`: AgentStateSnapshot defines only __eq__
            doctor.failures.append(FAILED)
            say("  FAILED  the loaded thread differs from the saved one (the store does not keep what it is given)")
        doctor.check("delete it", lambda: checkpointer.delete(scratch) or _missing(scratch, "delete"))
    finally:
        try:
            checkpointer.delete(scratch)
        except AgentsPersistError:
            pass  # already reported by the failed step


def _missing(thread_id: str, action: str) -> NoReturn:
    raise AgentsPersistError(f"the scratch thread {thread_id!r} was not there to {action} (the save did not stick)")
