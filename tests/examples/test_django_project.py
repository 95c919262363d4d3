"""examples/django_project as its docstring runs it: ``manage.py check`` passes and connects to nothing.

Its views are hammered by Django's own test runner in tests/integrations/django (test settings on this project).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integrations.support import ROOT

PROJECT = ROOT / "examples" / "django_project"


def test_manage_py_check_passes_without_touching_the_store(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("AGENTS_PERSIST_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert list(tmp_path.iterdir()) == []  # the default SQLite store is not created by a check
