"""The agents-persist command, run as real subprocesses against a SQLite file: demo, list, show, delete."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest

from agents_persist import SqliteCheckpointer
from tests.cli.helpers import clean_env, run_cli

THREAD = "demo-cli-test"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Tuple[str, Path, Dict[str, str], "subprocess.CompletedProcess[str]"]]:
    """Run the demo in a fresh directory; the tests inspect its output and the store it left."""
    workdir = tmp_path
    db = workdir / "x.db"
    url = f"sqlite:///{db}"
    env = clean_env()
    result = run_cli("--url", url, "demo", "--thread", THREAD, cwd=workdir, env=env)
    yield url, workdir, env, result


def test_demo_exits_zero_and_tells_the_story(demo: Tuple[str, Path, Dict[str, str], "subprocess.CompletedProcess[str]"]) -> None:
    url, workdir, env, result = demo
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "pending approval: book_flight" in out
    assert "second process" in out
    assert "restored 5 messages" in out  # printed by the resuming child process
    assert "Back in the first process" in out
    # two different process IDs appear: the first process and the resuming one
    pids = {line.split("]")[0] for line in out.splitlines() if line.startswith("[process ")}
    assert len(pids) == 2, out
    assert not (workdir / "agents_persist.db").exists()  # --url was used, not the default


def test_demo_leaves_version_2_with_7_messages_and_no_interrupt(
    demo: Tuple[str, Path, Dict[str, str], "subprocess.CompletedProcess[str]"],
) -> None:
    url, workdir, env, result = demo
    assert result.returncode == 0, result.stderr
    with SqliteCheckpointer(url[len("sqlite:///") :]) as cp:
        state = cp.load(THREAD)
        assert state is not None
        assert state.version == 2
        assert len(state.messages) == 7
        assert state.current_interrupt is None
        assert [t.status for t in state.todos] == ["completed", "completed"]
        assert state.metadata.get("approved_by") == "demo-operator"
        assert state.messages[-1].role == "assistant" and "PNR7Q2" in state.messages[-1].content
        assert [info.thread_id for info in cp.list_threads()] == [THREAD]


def test_list_show_delete(demo: Tuple[str, Path, Dict[str, str], "subprocess.CompletedProcess[str]"]) -> None:
    url, workdir, env, result = demo
    assert result.returncode == 0, result.stderr

    listed = run_cli("--url", url, "list", cwd=workdir, env=env)
    assert listed.returncode == 0, listed.stderr
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith(THREAD)]
    assert "version 2" in line and "7 messages" in line

    prefixed = run_cli("--url", url, "list", "--prefix", "nomatch-", cwd=workdir, env=env)
    assert prefixed.returncode == 0 and THREAD not in prefixed.stdout and "no threads" in prefixed.stdout

    shown = run_cli("--url", url, "show", THREAD, "--json", cwd=workdir, env=env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["version"] == 2
    assert len(data["messages"]) == 7 and data["current_interrupt"] is None
    assert data["messages"][0]["role"] == "system"
    assert data["metadata"]["approved_by"] == "demo-operator"

    plain = run_cli("--url", url, "show", THREAD, cwd=workdir, env=env)
    assert plain.returncode == 0 and "version 2, 7 messages" in plain.stdout

    deleted = run_cli("--url", url, "delete", THREAD, cwd=workdir, env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert THREAD in deleted.stdout

    gone = run_cli("--url", url, "show", THREAD, cwd=workdir, env=env)
    assert gone.returncode == 3  # not found
    assert gone.stdout == "" and gone.stderr.count("\n") == 1 and "not found" in gone.stderr

    again = run_cli("--url", url, "delete", THREAD, cwd=workdir, env=env)
    assert again.returncode == 3 and "not found" in again.stderr


def test_env_url_is_used_when_no_url_is_given(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    SqliteCheckpointer(str(db)).close()
    env = clean_env(AGENTS_PERSIST_URL=f"sqlite:///{db}")
    result = run_cli("list", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "no threads" in result.stdout
    assert not (tmp_path / "agents_persist.db").exists()


def test_unknown_scheme_exits_2_with_a_typed_error(tmp_path: Path) -> None:
    result = run_cli("--url", "nosuch://user:hunter2@host/x", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert "ConfigurationError" in result.stderr and "nosuch" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_invalid_thread_id_exits_2(tmp_path: Path) -> None:
    SqliteCheckpointer(str(tmp_path / "x.db")).close()
    result = run_cli("--url", f"sqlite:///{tmp_path / 'x.db'}", "show", "bad\x01id", cwd=tmp_path)
    assert result.returncode == 2
    assert "InvalidThreadIdError" in result.stderr
