"""What a new user hit, one test each (each failed before its fix), and the one-line-error rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

from agents_persist import SqliteCheckpointer
from agents_persist.cli import main
from tests.cli.helpers import clean_env, run_cli, seed


def sqlite_store(tmp_path: Path, name: str = "x.db", threads: int = 0) -> str:
    """A SQLite store with ``threads`` threads; its URL."""
    path = tmp_path / name
    with SqliteCheckpointer(str(path), synchronous="NORMAL") as cp:
        seed(cp, "t-", threads)
    return f"sqlite:///{path}"


@pytest.mark.parametrize("command", [["list", "--limit", "1500"], ["export"]])
def test_output_piped_into_head_ends_without_a_traceback(tmp_path: Path, command: List[str]) -> None:
    url = sqlite_store(tmp_path, threads=1500)  # more than a pipe buffer of output
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents_persist.cli", "--url", url, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert b"t-0" in proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["list", "--limit", "0"], "InvalidArgumentError: limit must be"),
        (["list", "--limit", "ten"], "not a whole number"),
        (["list", "--cursor", "not-a-cursor"], "InvalidArgumentError: invalid list_threads cursor"),
        (["list", "--cursor", "eyJ9"], "InvalidArgumentError: invalid list_threads cursor"),
    ],
)
def test_bad_limit_or_cursor_is_one_line_and_exit_2(tmp_path: Path, args: List[str], fragment: str) -> None:
    result = run_cli("--url", sqlite_store(tmp_path), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr


def test_internal_demo_resume_is_not_in_help(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "demo" in result.stdout and "doctor" in result.stdout
    assert "_demo-resume" not in result.stdout
    wrong = run_cli("nosuch", cwd=tmp_path)
    assert wrong.returncode == 2 and "_demo-resume" not in wrong.stderr


def test_url_is_accepted_after_the_command(tmp_path: Path) -> None:
    url = sqlite_store(tmp_path, threads=1)
    after = run_cli("list", "--url", url, cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith("t-00000\t")
    # after the command wins over before it, and over the environment
    both = run_cli(
        "--url", "sqlite:///elsewhere.db", "list", "--url", url, cwd=tmp_path, env=clean_env(AGENTS_PERSIST_URL="nosuch://")
    )
    assert both.returncode == 0 and both.stdout.startswith("t-00000\t")


@pytest.mark.parametrize("command", [["list"], ["show", "x"], ["stats"], ["export"], ["delete", "x"], ["purge-expired"]])
def test_read_only_commands_never_create_a_sqlite_file(tmp_path: Path, command: List[str]) -> None:
    result = run_cli(*command, cwd=tmp_path)  # default URL: sqlite:///agents_persist.db in an empty folder
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "no store at sqlite:///agents_persist.db" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_on_memory_runs_the_resume_in_process(tmp_path: Path) -> None:
    result = run_cli("--url", "memory://", "demo", "--thread", "m1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "restored 5 messages" in result.stdout and "this process only" in result.stdout
    assert "Back in the first process" in result.stdout and "PNR7Q2" in result.stdout


def test_demo_child_gets_the_url_through_the_environment_not_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'secret-name.db'}"
    calls: List[Any] = []
    real_run = subprocess.run

    def recording_run(argv: List[str], **kwargs: Any) -> Any:
        calls.append((argv, kwargs.get("env")))
        kwargs["env"] = {**clean_env(), **(kwargs.get("env") or {})}
        return real_run(argv, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    assert main(["--url", url, "demo", "--thread", "d1"]) == 0
    ((argv, env),) = calls
    assert not any("secret-name" in part for part in argv), argv
    assert env is not None and env["AGENTS_PERSIST_URL"] == url


def test_one_line_errors_with_documented_codes(tmp_path: Path) -> None:
    url = sqlite_store(tmp_path, threads=2)
    conflicting = tmp_path / "other.jsonl"
    with SqliteCheckpointer(str(tmp_path / "y.db")) as cp:
        seed(cp, "t-", 1)
    assert main(["--url", f"sqlite:///{tmp_path / 'y.db'}", "export", "--output", str(conflicting)]) == 0
    with SqliteCheckpointer(str(tmp_path / "x.db")) as cp:
        cp.update("t-00000", lambda s: s.metadata.update(changed=True))
    cases = [
        (["nosuch"], 2),
        (["show"], 2),
        (["--url", "nosuch://h", "list"], 2),
        (["--url", url, "show", "missing"], 3),
        (["--url", url, "import", "--input", str(tmp_path / "missing.jsonl")], 3),
        (["--url", url, "doctor", "redis://127.0.0.1:1/0?timeout=1"], 4),
        (["--url", url, "list", "--limit", "-1"], 2),
    ]
    for args, code in cases:
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == code, (args, result.stderr)
        if args[-2:-1] != ["doctor"]:  # doctor explains each check on stdout instead
            assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, (args, result.stderr)
    clash = run_cli("--url", url, "import", "--input", str(conflicting), cwd=tmp_path)
    assert clash.returncode == 5
    assert "conflicts 1" in clash.stdout and "Traceback" not in clash.stderr
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"thread_id": 5}\n')
    bad = run_cli("--url", url, "import", "--input", str(bad_line), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "line 1" in bad.stderr


def test_main_returns_codes_instead_of_raising_system_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert main(["nosuch"]) == 2
    assert "usage" not in capsys.readouterr().err
