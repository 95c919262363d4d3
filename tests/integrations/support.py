"""Helpers of the integration tests: many threads posting to one thread ID, a free port, a server subprocess stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

#: ``post(client, content) -> (status, body)``: one request of a framework's test client.
Post = Callable[[Any, str], Tuple[int, Any]]


def hammer(new_client: Callable[[], Any], post: Post, threads: int, requests: int) -> Tuple[List[Dict[str, Any]], List[str]]:
    """Run ``threads`` threads, each with its own client, each posting ``requests`` contents ``"<n>-<i>"``.

    Returns the bodies of the 200 answers and a description of every other answer.
    """
    results: List[Dict[str, Any]] = []
    failures: List[str] = []
    lock = threading.Lock()

    def client_thread(n: int) -> None:
        client = new_client()
        for i in range(requests):
            status, body = post(client, f"{n}-{i}")
            with lock:
                (results if status == 200 else failures).append(body if status == 200 else f"{status} {str(body)[:200]}")

    workers = [threading.Thread(target=client_thread, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results, failures


def expected_contents(threads: int, requests: int) -> List[str]:
    """The sorted contents :func:`hammer` posts."""
    return sorted(f"{n}-{i}" for n in range(threads) for i in range(requests))


def stop_process(process: "subprocess.Popen[bytes]", deadline: float) -> None:
    """SIGTERM ``process`` by PID (a graceful shutdown for gunicorn and Celery), then SIGKILL after ``deadline`` seconds."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=deadline)


ROOT = Path(__file__).resolve().parents[2]
STOP_DEADLINE = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: "subprocess.Popen[bytes]") -> None:
    """SIGTERM the server's master by PID (it stops its workers), then SIGKILL after a deadline."""
    stop_process(process, STOP_DEADLINE)


@contextmanager
def serving(
    command: List[str], tmp_path: Path, name: str, env: Optional[Mapping[str, str]] = None
) -> Iterator[Tuple["subprocess.Popen[bytes]", Path]]:
    """Run ``command`` in ``tmp_path`` (importing the repository and ``tmp_path``), logging to ``<name>.log``; stop it after.

    ``env`` adds variables (``AGENTS_PERSIST_URL`` is unset unless given there).
    """
    log = tmp_path / f"{name}.log"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    environment.pop("AGENTS_PERSIST_URL", None)
    environment.update(env or {})
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process, log
    finally:
        stop(process)


def wait_until_answering(url: str, process: "subprocess.Popen[bytes]", log: Path, deadline: float = 60.0) -> None:
    """Poll ``url`` until the server answers at all (any HTTP status); fail if it exits or ``deadline`` passes."""
    import pytest

    give_up = time.monotonic() + deadline
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode} before answering:\n{log.read_text()[-3000:]}")
        if time.monotonic() > give_up:
            pytest.fail(f"the server did not answer within {deadline}s:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2.0):
                return
        except urllib.error.HTTPError:
            return  # an answer, e.g. 404 for a thread that does not exist yet
        except OSError:
            time.sleep(0.2)
