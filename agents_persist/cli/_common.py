"""What every ``agents-persist`` command shares: exit codes, one-line errors, opening a store."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator, Optional
from urllib.parse import unquote, urlsplit

from ..checkpointer import Checkpointer
from ..errors import (
    AgentsPersistError,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    InvalidArgumentError,
    InvalidThreadIdError,
    SerializationError,
    SnapshotTooLargeError,
)
from ..redaction import scrub
from ..urls import DEFAULT_URL, ENV_URL, from_url, redact_url

#: Exit codes (documented in docs/cli.rst).
OK = 0
FAILED = 1  # a check failed or stored data could not be read
USAGE = 2  # bad command line, bad URL, bad input
NOT_FOUND = 3  # no such thread, or no store at the URL
UNAVAILABLE = 4  # the backend could not be reached
CONFLICT = 5  # a thread exists with other content (import/copy without --force, or a concurrent save)
BROKEN_PIPE = 141  # stdout was closed early (``| head``): 128 + SIGPIPE, like any Unix tool

PROG = "agents-persist"


class CliError(Exception):
    """A user-facing failure: printed as one line on stderr, exits with ``code``."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def default_url() -> str:
    """``$AGENTS_PERSIST_URL``, else the embedded default store."""
    return os.environ.get(ENV_URL) or DEFAULT_URL


def say(text: str = "") -> None:
    """Print one line to stdout, flushed (so a closed pipe shows at once)."""
    print(text, flush=True)


def complain(message: str) -> None:
    """Print one error line to stderr."""
    print(f"{PROG}: {scrub(message)}", file=sys.stderr, flush=True)


def exit_code_for(exc: AgentsPersistError) -> int:
    """The documented exit code of a library error."""
    if isinstance(exc, ConflictError):
        return CONFLICT
    if isinstance(exc, BackendUnavailableError):
        return UNAVAILABLE
    usage = (ConfigurationError, InvalidArgumentError, InvalidThreadIdError, SerializationError, SnapshotTooLargeError)
    return USAGE if isinstance(exc, usage) else FAILED


def describe(exc: AgentsPersistError) -> str:
    """One line naming the error type; never a password (URLs, credential options and remembered secrets are scrubbed)."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {scrub(first)}"


def sqlite_path(url: str) -> Optional[str]:
    """The file a ``sqlite://`` URL names (None for other schemes and in-memory databases)."""
    if not url.lower().startswith("sqlite:"):
        return None
    parts = urlsplit(url)
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if path in ("", ":memory:") or path.startswith("file:"):
        return None
    return path


@contextmanager
def open_store(url: str, *, read_only: bool = False) -> Iterator[Checkpointer]:
    """Build the checkpointer of ``url``; a read-only command never creates a SQLite file.

    Raises:
        CliError: ``read_only`` and the SQLite file does not exist (exit code 3).
    """
    path = sqlite_path(url) if read_only else None
    if path is not None and not os.path.exists(path):
        raise CliError(f"no store at {redact_url(url)} (the file {path} does not exist)", NOT_FOUND)
    with from_url(url) as checkpointer:
        yield checkpointer
