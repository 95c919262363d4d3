"""A real ``gunicorn -w 4 --preload`` serving the test app; concurrent HTTP POSTs to one thread lose nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.integrations.support import stop_process
from tests.spec import BackendSpec

ROOT = Path(__file__).resolve().parents[3]
WORKERS, CLIENT_THREADS, POSTS = 4, 4, 50
START_DEADLINE, STOP_DEADLINE = 60.0, 15.0

APP_MODULE = """\
from tests.integrations.flask.app import create_app

app = create_app({url!r}, {options!r}, error_handlers=True)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> Dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_gunicorn_preload_4_workers_keeps_every_post(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> None:
    spec: BackendSpec = request.getfixturevalue(f"{backend}_spec")
    (tmp_path / "ap_gunicorn_app.py").write_text(APP_MODULE.format(url=spec.url, options=spec.options))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    thread_id = f"{prefix}gunicorn"
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    env.pop("AGENTS_PERSIST_URL", None)
    command = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "--preload", "-b", f"127.0.0.1:{port}"]
    command += ["--chdir", str(tmp_path), "--graceful-timeout", "5", "ap_gunicorn_app:app"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_DEADLINE
        health = None
        while health is None:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode} before answering:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not answer within {START_DEADLINE}s:\n{log.read_text()[-3000:]}")
            try:
                health = _get(f"{base}/health", timeout=2.0)
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        assert health["built"] is False  # the --preload master opened nothing; the worker builds on first use

        statuses: List[int] = []
        versions: List[int] = []
        pids: set = set()
        errors: List[str] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            for i in range(POSTS):
                body = json.dumps({"content": f"{n}-{i}"}).encode()
                req = urllib.request.Request(
                    f"{base}/threads/{thread_id}/messages", data=body, headers={"Content-Type": "application/json"}
                )
                try:
                    with urllib.request.urlopen(req, timeout=30) as response:
                        data = json.loads(response.read())
                        with lock:
                            statuses.append(response.status)
                            versions.append(data["version"])
                            pids.add(data["pid"])
                except urllib.error.HTTPError as exc:
                    with lock:
                        statuses.append(exc.code)
                        errors.append(exc.read().decode(errors="replace")[:300])

        started = time.monotonic()
        clients = [threading.Thread(target=client, args=(n,)) for n in range(CLIENT_THREADS)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        elapsed = time.monotonic() - started

        total = CLIENT_THREADS * POSTS
        assert errors == [] and statuses == [200] * total
        assert sorted(versions) == list(range(1, total + 1))
        checkpointer = spec.build()
        try:
            state = checkpointer.load(thread_id)
            assert state is not None and len(state.messages) == total and state.version == total
            print(
                f"\ngunicorn[{backend}]: {total} POSTs from {CLIENT_THREADS} threads in {elapsed:.2f}s "
                f"({total / elapsed:.0f}/s) served by {len(pids)} workers; stored {len(state.messages)} messages"
            )
        finally:
            checkpointer.delete(thread_id)
            checkpointer.close()
    finally:
        stop_process(process, STOP_DEADLINE)
