"""doctor on good and bad stores; stats; purge-expired; copy without tqdm installed."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agents_persist import SqliteCheckpointer, from_url
from agents_persist.cli import main
from tests.cli.helpers import run_cli, seed, spec_url
from tests.spec import BackendSpec

#: Stores doctor must pass on (contract spec fixtures).
GOOD = ["sqlite", "redis", "redis_cluster", "postgres", "dynamodb"]


@pytest.mark.parametrize("name", GOOD)
def test_doctor_passes_on_a_good_store(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    spec: BackendSpec = request.getfixturevalue(f"{name}_spec")
    url = spec_url(spec)
    spec.build().close()  # the store exists (doctor never creates a SQLite file)
    result = run_cli("doctor", url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("  ok  ") == 5 and "FAILED" not in out and "all checks passed" in out
    assert " ms)" in out  # latencies
    with from_url(url) as cp:
        assert not [info for info in cp.iter_threads("agents-persist-doctor-")]  # the scratch thread is gone


@pytest.mark.parametrize(
    "url, code, words",
    [
        ("redis://127.0.0.1:1/0?timeout=1", 4, "the server did not answer"),
        ("postgresql://nobody@127.0.0.1:1/x?connect_timeout=1", 4, "the server did not answer"),
        ("nosuch://host/x", 2, "the URL or its options are wrong"),
        ("sqlite:///x.db?no_such_option=1", 2, "the URL or its options are wrong"),
    ],
)
def test_doctor_fails_on_a_bad_store_and_says_why(url: str, code: int, words: str, tmp_path: Path) -> None:
    SqliteCheckpointer(str(tmp_path / "x.db")).close()  # the file exists; its URL's option is wrong
    result = run_cli("doctor", url, cwd=tmp_path)
    assert result.returncode == code, result.stdout + result.stderr
    assert "FAILED" in result.stdout and words in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert "the store is not usable" in result.stdout


def test_doctor_uses_url_when_no_argument_is_given(tmp_path: Path) -> None:
    SqliteCheckpointer(str(tmp_path / "d.db")).close()
    result = run_cli("doctor", "--url", f"sqlite:///{tmp_path / 'd.db'}", cwd=tmp_path)
    assert result.returncode == 0 and "all checks passed" in result.stdout


def test_doctor_never_creates_a_sqlite_file(tmp_path: Path) -> None:
    result = run_cli("doctor", f"sqlite:///{tmp_path / 'typo.db'}", cwd=tmp_path)
    assert result.returncode == 3 and "no SQLite file" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_stats(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteCheckpointer(str(path)) as cp:
        seed(cp, "s-", 9)  # 1 + n % 4 messages each: 1+2+3+4+1+2+3+4+1
        infos = sorted(cp.iter_threads(), key=lambda info: info.updated_at)
    result = run_cli("--url", f"sqlite:///{path}", "stats", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "threads:  9\nmessages: 21\n" in result.stdout
    assert f"oldest update: {infos[0].updated_at.isoformat()}" in result.stdout
    assert f"newest update: {infos[-1].updated_at.isoformat()}" in result.stdout
    prefixed = run_cli("--url", f"sqlite:///{path}", "stats", "--prefix", "none-", cwd=tmp_path)
    assert "threads:  0\nmessages: 0\noldest update: -" in prefixed.stdout


def test_purge_expired(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with SqliteCheckpointer(str(path), ttl=0.05) as cp:
        seed(cp, "p-", 3)
    time.sleep(0.1)
    result = run_cli("--url", f"sqlite:///{path}", "purge-expired", cwd=tmp_path)
    assert result.returncode == 0 and "purged 3 expired threads" in result.stdout, result.stderr


def test_copy_without_tqdm_has_no_bar_but_the_same_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    with SqliteCheckpointer(str(tmp_path / "a.db")) as cp:
        seed(cp, "c-", 5)
    assert main(["copy", "--from", f"sqlite:///{tmp_path / 'a.db'}", "--to", f"sqlite:///{tmp_path / 'b.db'}"]) == 0
    captured = capsys.readouterr()
    assert "copied 5, already identical 0, conflicts 0" in captured.out and captured.err == ""


def test_delete_inactive(tmp_path: Path) -> None:
    path = tmp_path / "i.db"
    with SqliteCheckpointer(str(path)) as cp:
        seed(cp, "old-", 3)
        time.sleep(0.05)
        middle = datetime.now(timezone.utc)
        time.sleep(0.05)
        seed(cp, "new-", 2)
    url = f"sqlite:///{path}"
    result = run_cli("--url", url, "delete-inactive", "--before", middle.isoformat(), "--batch-size", "2", cwd=tmp_path)
    assert result.returncode == 0 and f"deleted 3 threads not saved since {middle.isoformat()}" in result.stdout, result.stderr
    assert run_cli("--url", url, "delete-inactive", "--older-than", "1d", cwd=tmp_path).stdout.startswith("deleted 0 threads")
    with SqliteCheckpointer(str(path)) as cp:
        assert sorted(info.thread_id for info in cp.iter_threads()) == ["new-00000", "new-00001"]
    for bad in (["--older-than", "3 days"], ["--before", "2025-01-01T00:00:00"], [], ["--batch-size", "0", "--older-than", "1d"]):
        failed = run_cli("--url", url, "delete-inactive", *bad, cwd=tmp_path)
        assert failed.returncode == 2 and failed.stderr.count("\n") == 1, (bad, failed.stderr)
    assert run_cli("--url", url, "delete-inactive", "--older-than", "0s", cwd=tmp_path).stdout.startswith("deleted 2 threads")
