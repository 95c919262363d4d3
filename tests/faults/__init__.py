"""Helpers of the fault suites (tests/contract/test_crashes.py, test_soak.py): settings, summaries, debris, connections."""

from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

import pytest

T = TypeVar("T", int, float)


def overridden(default: T, variable: str, kind: Callable[[str], T]) -> T:
    """``$variable`` if set (a longer nightly run, a quick local one), else the ContractSpec's ``default``."""
    raw = os.environ.get(variable, "").strip()
    return kind(raw) if raw else default


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print ``line`` past pytest's capture (the one-line figures of a fault run, to be quoted)."""
    with capsys.disabled():
        sys.stdout.write(f"\n{line}\n")
        sys.stdout.flush()
