"""examples/celery_worker.py in a real Celery prefork worker (4 children) over a Redis broker.

200 tasks update one thread: none lost, none applied twice; the beat purge task removes expired threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List
from urllib.parse import urlsplit, urlunsplit

import pytest
from celery import Celery
from celery.result import AsyncResult

from agents_persist import AgentStateSnapshot
from tests.cli.helpers import spec_url
from tests.fixtures.redis import AnyRedisServer
from tests.integrations.support import ROOT, stop_process
from tests.spec import BackendSpec

CHILDREN, TASKS, DUPLICATES = 4, 200, 10
START_DEADLINE, RESULTS_DEADLINE, STOP_DEADLINE = 60.0, 180.0, 20.0
#: Redis databases of the broker and the results (the contract suite uses db 0).
BROKER_DB, RESULTS_DB = 13, 14

#: The example (docs/integrations/celery.rst), configured by environment variables; the worker runs in its directory.
EXAMPLES = ROOT / "examples"
TASKS_MODULE = "celery_worker"
ADD_MESSAGE = f"{TASKS_MODULE}.add_message"
#: What the worker's main process runs: the example, and its checkpointer used once before the children fork.
WARM_MODULE = f"""\
from {TASKS_MODULE} import app, checkpointer

checkpointer.get_version("warm-up-before-fork")  # open connections in the parent: the children must not share them
"""


def _db_url(server_url: str, db: int) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def _wait(results: List[AsyncResult], log: Path, process: "subprocess.Popen[bytes]") -> List[Dict[str, Any]]:
    """Every result's value, failing the test if the worker dies or the deadline passes."""
    deadline = time.monotonic() + RESULTS_DEADLINE
    values: List[Dict[str, Any]] = []
    for result in results:
        while not result.ready():
            if process.poll() is not None:
                pytest.fail(f"the worker exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"results not ready within {RESULTS_DEADLINE}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.05)
        values.append(result.get(timeout=5))
    return values


@pytest.fixture
def worker(request: pytest.FixtureRequest, redis_server: AnyRedisServer, tmp_path: Path) -> Iterator[Dict[str, Any]]:
    """A ``celery worker -P prefork -c 4`` on the test's backend; yields the client app, queue, log and process."""
    spec: BackendSpec = request.getfixturevalue(f"{request.param}_spec")
    broker, results = _db_url(redis_server.url, BROKER_DB), _db_url(redis_server.url, RESULTS_DB)
    queue = f"ap-test-{uuid.uuid4().hex[:8]}"  # a queue of its own: nothing else's tasks, even on a shared Redis
    (tmp_path / "ap_celery_warm.py").write_text(WARM_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]), "AGENTS_PERSIST_URL": spec_url(spec)}
    env["CELERY_QUEUE"] = queue
    env.update(CELERY_BROKER_URL=broker, CELERY_RESULT_BACKEND=results)
    command = [sys.executable, "-m", "celery", "--workdir", str(EXAMPLES), "-A", "ap_celery_warm"]
    command += ["worker", "-P", "prefork", "-c", str(CHILDREN)]
    command += ["-Q", queue, "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    client = Celery("ap_test_client", broker=broker, backend=results)
    client.conf.update(task_default_queue=queue, broker_connection_retry_on_startup=True)
    try:
        deadline = time.monotonic() + START_DEADLINE
        while b"ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the celery worker did not start (exit {process.poll()}):\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield {"client": client, "spec": spec, "log": log, "process": process}
    finally:
        stop_process(process, STOP_DEADLINE)
        client.close()


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["sqlite", "redis"], indirect=True)
def test_prefork_worker_applies_each_task_once(worker: Dict[str, Any], prefix: str) -> None:
    client, spec, log, process = worker["client"], worker["spec"], worker["log"], worker["process"]
    thread_id = f"{prefix}celery"
    started = time.monotonic()
    sent = [client.send_task(ADD_MESSAGE, args=[thread_id, f"m{i}"]) for i in range(TASKS)]
    values = _wait(sent, log, process)
    elapsed = time.monotonic() - started

    assert sorted(v["version"] for v in values) == list(range(1, TASKS + 1))  # each task one commit, none lost
    pids = {v["pid"] for v in values}
    assert len(pids) >= 2 and process.pid not in pids  # the forked children did the work

    # Redeliver the last tasks with their own IDs (as a retry or an acks_late redelivery would): applied once.
    last = sorted(zip(values, sent), key=lambda pair: pair[0]["version"])[-DUPLICATES:]
    again = []
    for _, original in last:
        original.forget()
        again.append(client.send_task(ADD_MESSAGE, args=[thread_id, "duplicate"], task_id=original.id))
    assert [v["version"] for v in _wait(again, log, process)] == [TASKS] * DUPLICATES

    checkpointer = spec.build()
    try:
        state = checkpointer.load(thread_id)
        assert state is not None and state.version == TASKS and len(state.messages) == TASKS
        assert sorted(m.content for m in state.messages) == sorted(f"m{i}" for i in range(TASKS))
        print(f"\ncelery[{spec.name}]: {TASKS} tasks on {len(pids)} prefork children in {elapsed:.2f}s; {TASKS} messages stored")
    finally:
        checkpointer.delete(thread_id)
        checkpointer.close()


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["sqlite", "redis"], indirect=True)
def test_beat_purge_task_removes_expired_threads(worker: Dict[str, Any], prefix: str) -> None:
    client, spec = worker["client"], worker["spec"]
    short_lived = spec.build(ttl=0.5)
    keeper = spec.build()
    try:
        short_lived.save(f"{prefix}expiring", AgentStateSnapshot())
        keeper.save(f"{prefix}kept", AgentStateSnapshot())
        time.sleep(1.0)
        removed = _wait([client.send_task("agents_persist.purge_expired")], worker["log"], worker["process"])[0]
        assert isinstance(removed, int)
        if spec.name == "sqlite":
            assert removed >= 1  # Redis expires keys itself; SQLite keeps them until purged
        assert short_lived.store.read(f"{prefix}expiring") is None  # gone from the store, not just hidden
        assert keeper.exists(f"{prefix}kept")
    finally:
        keeper.delete(f"{prefix}kept")
        short_lived.close()
        keeper.close()
