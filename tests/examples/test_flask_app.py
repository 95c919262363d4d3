"""examples/flask_app.py under a real ``gunicorn -w 4 --preload``: concurrent POSTs to one thread lose nothing."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Tuple

import pytest

from tests.examples.conftest import Served
from tests.integrations.support import ROOT, expected_contents, hammer, serving, wait_until_answering

WORKERS, CLIENT_THREADS, POSTS = 4, 4, 50


@pytest.mark.slow
def test_gunicorn_preload_4_workers_keeps_every_post(served: Served, tmp_path: Path, prefix: str) -> None:
    spec, base, thread_id = served.spec, served.base, f"{prefix}gunicorn"
    # as the example's docstring runs it; the store comes from the environment
    command = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "--preload", "--chdir", str(ROOT / "examples")]
    command += ["-b", f"127.0.0.1:{served.port}", "--graceful-timeout", "5", "flask_app:create_app()"]

    def post(_: None, content: str) -> Tuple[int, Any]:
        body = json.dumps({"content": content}).encode()
        req = urllib.request.Request(f"{base}/threads/{thread_id}/messages", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    with serving(command, tmp_path, "gunicorn", env=served.env) as (process, log):
        wait_until_answering(f"{base}/threads/{thread_id}", process, log)  # 404: up, and nothing stored yet
        started = time.monotonic()
        results, failures = hammer(lambda: None, post, CLIENT_THREADS, POSTS)
        elapsed = time.monotonic() - started

    total = CLIENT_THREADS * POSTS
    assert failures == []
    assert sorted(r["version"] for r in results) == list(range(1, total + 1))  # each POST one commit, none lost
    pids = {r["pid"] for r in results}
    assert len(pids) >= 2 and process.pid not in pids  # the forked workers answered, not the --preload master
    with spec.build() as checkpointer:
        state = checkpointer.load(thread_id)
        try:
            assert state is not None and state.version == total and len(state.messages) == total
            assert sorted(m.content for m in state.messages) == expected_contents(CLIENT_THREADS, POSTS)
        finally:
            checkpointer.delete(thread_id)
    print(f"\ngunicorn[{spec.name}]: {total} POSTs from {CLIENT_THREADS} threads in {elapsed:.2f}s on {len(pids)} workers")
