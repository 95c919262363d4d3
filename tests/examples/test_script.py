"""examples/script.py runs as a plain script on the embedded store, and continues its thread on a second run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "script.py"


def _run(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_script_creates_then_continues_the_thread_in_the_working_directory(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.splitlines()[0] == "created demo:alice:report"
    assert "waiting for approval of send_email (call-1)" in first
    assert "AgentStateSnapshot(thread_id='demo:alice:report', version=3, messages=4, todos=2 (2 completed)" in first
    assert "AgentMessage(role='tool', content='sent', tool_call_id='call-1')" in first
    assert (tmp_path / "agents_example.db").is_file()

    second = _run(tmp_path)
    assert second.splitlines()[0] == "continuing demo:alice:report at version 3 (4 messages)"
    assert "thread_id='demo:alice:report', version=5, messages=7" in second


def test_script_takes_a_url(tmp_path: Path) -> None:
    out = _run(tmp_path, "--url", "memory://")
    assert out.startswith("created demo:alice:report")
    assert list(tmp_path.iterdir()) == []
