"""export/import/copy: exact round trips, a 1,000-thread copy across backends, a killed copy resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import msgspec
import pytest

from agents_persist import SqliteCheckpointer, from_url
from agents_persist.cli import main
from agents_persist.cli.transfer import ThreadRecord
from tests.cli.helpers import clean_env, seed, spec_url
from tests.spec import BackendSpec

#: Fields of an export that describe the source store, not the content: a destination assigns its own.
SOURCE_FIELDS = ("version", "updated_at", "expires_at")


def content_only(export: bytes) -> bytes:
    """An export with the source-describing fields blanked, re-encoded: equal bytes mean equal content."""
    lines = []
    for line in export.splitlines():
        record = msgspec.json.decode(line, type=ThreadRecord)
        lines.append(msgspec.json.encode(msgspec.structs.replace(record, version=0, updated_at=None, expires_at=None)))
    return b"\n".join(lines)


def export(url: str, prefix: str, path: Path) -> bytes:
    assert main(["--url", url, "export", "--prefix", prefix, "--output", str(path)]) == 0
    return path.read_bytes()


def test_export_import_round_trip_is_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with from_url(source) as cp:
        seed(cp, "r-", 60)
    first = export(source, "r-", tmp_path / "a.jsonl")
    assert first.count(b"\n") == 60
    assert b'"float":3.0' in first and b'"int":3,' in first and b'"big":1152921504606846979' in first  # ints stay ints
    assert b'"tiny":1e-300' in first
    assert main(["--url", target, "import", "--input", str(tmp_path / "a.jsonl")]) == 0
    assert "imported 60, already identical 0, conflicts 0" in capsys.readouterr().out
    second = export(target, "r-", tmp_path / "b.jsonl")
    assert content_only(second) == content_only(first)
    # every source thread was saved once, so even the versions match; only timestamps differ
    versions = [msgspec.json.decode(line, type=ThreadRecord).version for line in second.splitlines()]
    assert versions == [1] * 60
    # idempotent: a second import changes nothing
    assert main(["--url", target, "import", "--input", str(tmp_path / "a.jsonl")]) == 0
    assert "imported 0, already identical 60, conflicts 0" in capsys.readouterr().out
    assert export(target, "r-", tmp_path / "c.jsonl") == second


def test_import_conflict_and_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with from_url(source) as cp:
        seed(cp, "r-", 3)
    with from_url(target) as cp:
        seed(cp, "r-", 3)
        cp.update("r-00001", lambda s: s.metadata.update(local=True))
    dump = tmp_path / "a.jsonl"
    export(source, "r-", dump)
    assert main(["--url", target, "import", "-i", str(dump)]) == 5
    captured = capsys.readouterr()
    assert "imported 0, already identical 2, conflicts 1" in captured.out and "'r-00001'" in captured.err
    assert main(["--url", target, "import", "-i", str(dump), "--force"]) == 0
    assert "imported 1, already identical 2, conflicts 0" in capsys.readouterr().out
    assert content_only(export(target, "r-", tmp_path / "b.jsonl")) == content_only(dump.read_bytes())


def _sqlite_hop(tmp_path: Path, hop: int) -> str:
    return f"sqlite:///{tmp_path / f'hop{hop}.db'}?synchronous=NORMAL"


#: The copy chain; each entry names a spec fixture (``<name>_spec``), sqlite gets a new file per hop.
#: DynamoDB gets a table of its own (dropped afterwards) rather than the session's shared one.
CHAIN = ["sqlite", "redis", "postgres", "dynamodb_table", "sqlite"]


@pytest.fixture
def chain_urls(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Iterator[List[str]]:
    """One store URL per hop of ``CHAIN``; the threads under ``prefix`` are deleted from shared servers afterwards."""
    urls = []
    for hop, name in enumerate(CHAIN):
        if name == "sqlite":
            urls.append(_sqlite_hop(tmp_path, hop))
        else:
            spec: BackendSpec = request.getfixturevalue(f"{name}_spec")
            urls.append(spec_url(spec))
    yield urls
    for url in urls:
        if not url.startswith(("sqlite:", "dynamodb:")):  # files in tmp_path; the table is dropped by its fixture
            with from_url(url) as cp:
                for info in list(cp.iter_threads(prefix)):
                    cp.delete(info.thread_id)


def test_copy_1000_threads_along_the_backend_chain(
    chain_urls: List[str], prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with from_url(chain_urls[0]) as cp:
        seed(cp, prefix, 1000)
    for source, destination in zip(chain_urls, chain_urls[1:]):
        assert main(["copy", "--from", source, "--to", destination, "--prefix", prefix]) == 0
        assert "copied 1000, already identical 0, conflicts 0" in capsys.readouterr().out
    first = export(chain_urls[0], prefix, tmp_path / "first.jsonl")
    last = export(chain_urls[-1], prefix, tmp_path / "last.jsonl")
    assert first.count(b"\n") == 1000
    assert content_only(last) == content_only(first)
    # copying again is a no-op
    assert main(["copy", "--from", chain_urls[0], "--to", chain_urls[1], "--prefix", prefix]) == 0
    assert "copied 0, already identical 1000, conflicts 0" in capsys.readouterr().out


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    with SqliteCheckpointer(str(path)) as cp:
        return sum(1 for _ in cp.iter_threads())


def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_copy_killed_halfway_and_run_again_finishes_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    total = 3000
    source, target = tmp_path / "src.db", tmp_path / "dst.db"
    with SqliteCheckpointer(str(source), synchronous="NORMAL") as cp:
        seed(cp, "k-", total)
    argv = [sys.executable, "-m", "agents_persist.cli", "copy", "--from", f"sqlite:///{source}", "--to", f"sqlite:///{target}"]
    child = subprocess.Popen(argv, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _count(target) >= 200, timeout=120)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    done = _count(target)
    assert 200 <= done < total, "the copy finished before it was killed; nothing was resumed"
    assert main(["copy", "--from", f"sqlite:///{source}", "--to", f"sqlite:///{target}"]) == 0
    out = capsys.readouterr().out
    counts: Dict[str, int] = {}
    for part in out.strip().splitlines()[-1].split(", "):
        label, _, number = part.rpartition(" ")
        counts[label] = int(number)
    assert counts["conflicts"] == 0
    assert counts["already identical"] >= done and counts["copied"] + counts["already identical"] == total
    with SqliteCheckpointer(str(target)) as cp:
        ids = [info.thread_id for info in cp.iter_threads()]
    assert ids == [f"k-{n:05d}" for n in range(total)]  # no duplicate, none missing
    src_dump = export(f"sqlite:///{source}", "k-", tmp_path / "s.jsonl")
    assert content_only(export(f"sqlite:///{target}", "k-", tmp_path / "d.jsonl")) == content_only(src_dump)
