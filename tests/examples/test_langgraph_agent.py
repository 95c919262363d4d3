"""examples/langgraph_agent.py runs as a plain script on the embedded store, and continues its thread on a second run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langgraph.checkpoint.base", reason="needs the langgraph extra")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "langgraph_agent.py"


def _run(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_example_interrupts_resumes_and_continues(tmp_path: Path) -> None:
    first = _run(tmp_path).splitlines()
    assert first == [
        "thread alice: 0 messages stored",
        "waiting for approval: run get_weather({'city': 'Paris'})?",
        "human: What is the weather in Paris?",
        "ai: [{'name': 'get_weather', 'args': {'city': 'Paris'}, 'id': 'call-1', 'type': 'tool_call'}]",
        "tool: sunny in Paris",
        "ai: It is sunny in Paris.",
        "4 messages, 6 checkpoints",
    ]
    assert (tmp_path / "langgraph_example.db").is_file()
    second = _run(tmp_path).splitlines()
    assert second[0] == "thread alice: 4 messages stored"
    assert second[-1] == "8 messages, 12 checkpoints"


def test_example_takes_a_url(tmp_path: Path) -> None:
    assert _run(tmp_path, "--url", "memory://").splitlines()[-1] == "4 messages, 6 checkpoints"
    assert list(tmp_path.iterdir()) == []
