"""The Django integration, run by Django's own test runner in a subprocess; the management command for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, from_url
from tests.spec import BackendSpec

ROOT = Path(__file__).resolve().parents[3]
#: The example project (examples/django_project): its package agent_site is importable from here.
EXAMPLE_PROJECT = ROOT / "examples" / "django_project"
SETTINGS = "tests.integrations.django.project.settings"
DJANGO_TESTS = "tests.integrations.django.project.djangotests"
#: TestCases in project/djangotests.py.
DJANGO_TEST_COUNT = 11


def _env(tmp_path: Path, url: str, options: Dict[str, object], prefix: str, other_url: str = "memory://") -> Dict[str, str]:
    path = [str(ROOT), str(EXAMPLE_PROJECT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path).rstrip(os.pathsep)}
    env.pop("AGENTS_PERSIST_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        AP_TEST_URL=url,
        AP_TEST_OPTIONS=json.dumps(options),
        AP_TEST_OTHER_URL=other_url,
        AP_TEST_PREFIX=prefix,
        AP_TEST_TMP=str(tmp_path),
    )
    return env


def _django(args: List[str], env: Dict[str, str], cwd: Path, timeout: float = 300) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "django", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_django_test_runner_passes(backend: str, request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> None:
    spec: BackendSpec = request.getfixturevalue(f"{backend}_spec")
    result = _django(["test", DJANGO_TESTS, "--noinput", "-v", "2"], _env(tmp_path, spec.url, spec.options, prefix), tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    ran = re.search(r"^Ran (\d+) tests? in [\d.]+s\s+OK\b", result.stderr, re.MULTILINE)
    assert ran is not None, output[-6000:]
    assert int(ran.group(1)) == DJANGO_TEST_COUNT
    assert "System check identified no issues" in output  # the runner's own checks, on the real setting
    print(f"\ndjango[{backend}]: {ran.group(0).splitlines()[0]}")
    checkpointer = spec.build()
    try:
        assert list(checkpointer.iter_threads(prefix)) == []  # the Django tests cleaned up after themselves
    finally:
        checkpointer.close()


def test_manage_command_forwards_to_the_cli(sqlite_spec: BackendSpec, tmp_path: Path, prefix: str) -> None:
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    env = _env(tmp_path, sqlite_spec.url, sqlite_spec.options, prefix, other_url)
    thread_id = f"{prefix}manage"
    with from_url(sqlite_spec.url) as cp, from_url(other_url) as other:
        cp.save(thread_id, AgentStateSnapshot(messages=[AgentMessage.user("hello from django")]))
        other.save(f"{thread_id}-other", AgentStateSnapshot(messages=[AgentMessage.user("a"), AgentMessage.user("b")]))
        try:
            listed = _django(["agents_persist", "list", "--prefix", prefix], env, tmp_path)
            assert listed.returncode == 0, listed.stderr
            assert listed.stdout.startswith(f"{thread_id}\tversion 1\t1 messages")
            assert f"{thread_id}-other" not in listed.stdout
            other_listed = _django(
                ["agents_persist", "--alias", "other", "list", "--prefix", prefix, "--limit", "5"], env, tmp_path
            )
            assert other_listed.returncode == 0, other_listed.stderr
            assert other_listed.stdout.startswith(f"{thread_id}-other\tversion 1\t2 messages")
            shown = _django(["agents_persist", "show", thread_id, "--json"], env, tmp_path)
            assert shown.returncode == 0 and json.loads(shown.stdout)["messages"][0]["content"] == "hello from django"
            deleted = _django(["agents_persist", "delete", thread_id], env, tmp_path)
            assert deleted.returncode == 0 and f"deleted {thread_id!r}" in deleted.stdout
            missing = _django(["agents_persist", "show", thread_id], env, tmp_path)
            assert missing.returncode == 3 and "not found" in missing.stderr  # 3: not found (docs/cli.rst)
            bad = _django(["agents_persist", "--alias", "nope", "list"], env, tmp_path)
            assert bad.returncode != 0 and "no AGENTS_PERSIST alias 'nope'" in bad.stderr
        finally:
            cp.delete(thread_id)


def test_manage_check_reports_a_bad_url(tmp_path: Path, prefix: str) -> None:
    result = _django(["check"], _env(tmp_path, "nosuch://x", {}, prefix), tmp_path, timeout=60)
    assert result.returncode == 1
    assert "agents_persist.E001" in result.stderr and "unknown URL scheme 'nosuch'" in result.stderr
