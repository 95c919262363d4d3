"""Helpers of the integration tests: many threads posting to one thread ID, stopping a server process by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Any, Callable, Dict, List, Tuple

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
