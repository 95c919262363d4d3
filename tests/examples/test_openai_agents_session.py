"""examples/openai_agents_session.py runs offline (scripted models) and continues its session on a second run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli.helpers import spec_url
from tests.spec import BackendSpec

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "openai_agents_session.py"
FIRST = [
    "billing: Billing here: your invoice is paid.",
    "6 items: message, function_call, function_call_output, function_call, function_call_output, message",
    "last 2: ['function_call_output', 'assistant']",
]


def _run(cwd: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}  # no model is called
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_example_stores_then_resumes_the_session_in_the_working_directory(tmp_path: Path) -> None:
    assert _run(tmp_path).splitlines() == FIRST
    assert (tmp_path / "agents_example.db").is_file()
    assert _run(tmp_path).splitlines() == [
        "continuing demo:alice:support: 6 items stored",
        "billing: You're welcome!",
        "8 items: message, function_call, function_call_output, function_call, function_call_output, message, message, message",
        "last 2: ['user', 'assistant']",
    ]


def test_example_takes_a_url_and_a_session_id(tmp_path: Path, redis_spec: BackendSpec, prefix: str) -> None:
    from agents_persist import from_url

    url, session_id = spec_url(redis_spec), f"{prefix}support"
    with from_url(url) as cp:
        try:
            assert _run(tmp_path, "--url", url, "--session", session_id).splitlines() == FIRST
            assert cp.message_count(session_id) == 6
        finally:
            cp.delete(session_id)
    assert list(tmp_path.iterdir()) == []
