"""Running the agents-persist command in tests, and making stores full of threads."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Mapping, Optional
from urllib.parse import quote, urlencode

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, HitlInterrupt, TodoItem, ToolCall
from tests.spec import BackendSpec

#: A fixed interrupt time, so threads seeded twice hold identical content.
CREATED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def clean_env(**extra: str) -> Dict[str, str]:
    """This process's environment without ``AGENTS_PERSIST_URL`` (plus ``extra``)."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTS_PERSIST_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: Optional[Mapping[str, str]] = None, stdin: Optional[bytes] = None
) -> "subprocess.CompletedProcess[str]":
    """Run ``python -m agents_persist.cli ARGS`` and capture its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "agents_persist.cli", *args],
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(),
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


#: Options a ``dynamodb://`` URL takes in its user info (``KEY_ID:SECRET@``), never in its query.
DYNAMODB_KEY_PAIR = ("aws_access_key_id", "aws_secret_access_key")


def spec_url(spec: BackendSpec) -> str:
    """``spec`` as one URL (its options in the query), as an operator would type it.

    A DynamoDB key pair goes into the user info, as ``dynamodb://KEY_ID:SECRET@region/table``.
    """
    url, query = spec.url, dict(spec.options)
    if url.startswith("dynamodb://") and any(name in query for name in DYNAMODB_KEY_PAIR):
        key_id, secret = (quote(str(query.pop(name, "")), safe="") for name in DYNAMODB_KEY_PAIR)
        url = f"dynamodb://{key_id}:{secret}@" + url[len("dynamodb://") :]
    if not query:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(query)


def varied_state(n: int) -> AgentStateSnapshot:
    """A snapshot of every kind of content: ints, floats, unicode, nested JSON, tool calls, todos, an interrupt."""
    call = ToolCall(id=f"c{n}", name="lookup", arguments={"n": n, "ratio": n / 7, "flag": n % 2 == 0, "none": None})
    messages = [
        AgentMessage.system("be brief"),
        AgentMessage.user(f"question {n} \u00e9\u6f22\U0001f600"),
        AgentMessage.assistant(None, tool_calls=[call]),
        AgentMessage.tool({"result": [1, 2.0, 3.5, {"deep": [n]}]}, tool_call_id=call.id, name=call.name),
    ][: 1 + n % 4]
    interrupt = HitlInterrupt(tool_name="pay", tool_args={"eur": 1.5 + n}, call_id="p", created_at=CREATED)
    return AgentStateSnapshot(
        messages=messages,
        todos=[TodoItem(f"todo {n}", "completed" if n % 2 else "pending", id=f"t{n}")],
        current_interrupt=interrupt if n % 3 == 0 else None,
        metadata={"int": n, "float": float(n), "big": 2**60 + n, "tiny": 1e-300, "text": "x" * (n % 5)},
    )


def seed(checkpointer: Checkpointer, prefix: str, count: int) -> None:
    """Create ``count`` varied threads ``{prefix}00000`` ... under ``prefix``."""
    for n in range(count):
        checkpointer.save(f"{prefix}{n:05d}", varied_state(n))
