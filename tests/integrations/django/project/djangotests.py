"""Django ``TestCase``s run by Django's own test runner (``python -m django test``), from test_django.py.

Not named ``test_*.py``: pytest does not collect it; the pytest test runs it in a subprocess.
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, List, Tuple
from unittest import mock

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import Client, TestCase, override_settings

from agents_persist import ConfigurationError, InMemoryCheckpointer, from_url
from agents_persist.django import checkpointers
from tests.integrations.support import expected_contents, hammer

THREADS, REQUESTS = 8, 25


def _thread_id(name: str) -> str:
    return f"{settings.AP_TEST_PREFIX}{name}-{uuid.uuid4().hex[:6]}"


class StoreTestCase(TestCase):
    """Deletes the threads it created in the real store and drops the built checkpointers afterwards."""

    def setUp(self) -> None:
        self.created: List[str] = []

    def tearDown(self) -> None:
        for thread_id in self.created:
            checkpointers["default"].delete(thread_id)
        checkpointers.close_all()

    def new_thread(self, name: str) -> str:
        thread_id = _thread_id(name)
        self.created.append(thread_id)
        return thread_id


class HammerTests(StoreTestCase):
    def test_8_threads_x_25_requests_to_one_thread_keep_every_message(self) -> None:
        thread_id = self.new_thread("hammer")

        def post(client: Client, content: str) -> Tuple[int, Any]:
            response = client.post(f"/threads/{thread_id}/messages", {"content": content}, content_type="application/json")
            return response.status_code, response.json() if response.status_code == 200 else response.content

        results, failures = hammer(Client, post, THREADS, REQUESTS)
        versions = [r["version"] for r in results]

        total = THREADS * REQUESTS
        self.assertEqual(failures, [])
        self.assertEqual(sorted(versions), list(range(1, total + 1)))
        self.assertEqual(self.client.get(f"/threads/{thread_id}").json(), {"version": total, "count": total})
        state = checkpointers["default"].load(thread_id)
        assert state is not None
        self.assertEqual(sorted(m.content for m in state.messages), expected_contents(THREADS, REQUESTS))

    def test_one_checkpointer_per_alias_shared_by_threads_and_not_closed_per_request(self) -> None:
        thread_id = self.new_thread("shared")
        self.client.post(f"/threads/{thread_id}/messages", {"content": "a"}, content_type="application/json")
        first = checkpointers["default"]
        seen: List[object] = []
        worker = threading.Thread(target=lambda: seen.append(checkpointers["default"]))
        worker.start()
        worker.join()
        self.client.post(f"/threads/{thread_id}/messages", {"content": "b"}, content_type="application/json")
        self.assertIs(seen[0], first)
        self.assertIs(checkpointers["default"], first)
        self.assertFalse(first.closed)
        self.assertIsNot(checkpointers["other"], first)
        self.assertEqual(set(checkpointers), {"default", "other"})
        with self.assertRaisesRegex(ConfigurationError, "no AGENTS_PERSIST alias 'nope'"):
            checkpointers["nope"]


class OverrideSettingsTests(StoreTestCase):
    def test_override_switches_to_another_sqlite_file(self) -> None:
        thread_id = self.new_thread("override")
        real = checkpointers["default"]
        other_url = f"sqlite:///{Path(settings.AP_TEST_TMP) / f'override-{uuid.uuid4().hex[:6]}.db'}"
        with override_settings(AGENTS_PERSIST={"default": {"URL": other_url}}):
            self.assertTrue(real.closed)  # the old setting's checkpointer was dropped
            response = self.client.post(f"/threads/{thread_id}/messages", {"content": "x"}, content_type="application/json")
            self.assertEqual(response.json(), {"version": 1, "count": 1})
            overridden = checkpointers["default"]
            self.assertIsNot(overridden, real)
        self.assertTrue(overridden.closed)
        self.assertIsNone(checkpointers["default"].load(thread_id))  # back on the real store: nothing landed there
        self.assertEqual(self.client.get(f"/threads/{thread_id}").status_code, 404)
        with from_url(other_url) as direct:
            stored = direct.load(thread_id)
        assert stored is not None
        self.assertEqual([m.content for m in stored.messages], ["x"])

    @override_settings(AGENTS_PERSIST={"default": {"URL": "memory://", "OPTIONS": {"max_retries": 3}}})
    def test_override_decorator_to_memory(self) -> None:
        thread_id = _thread_id("memory")
        self.assertIsInstance(checkpointers["default"], InMemoryCheckpointer)
        self.assertEqual(checkpointers["default"].max_retries, 3)
        self.client.post(f"/threads/{thread_id}/messages", {"content": "m"}, content_type="application/json")
        self.assertEqual(self.client.get(f"/threads/{thread_id}").json(), {"version": 1, "count": 1})
        with from_url(os.environ["AP_TEST_URL"]) as real:
            self.assertIsNone(real.load(thread_id))


class SystemCheckTests(TestCase):
    def assert_check_fails_with(self, setting: object, check_id: str) -> None:
        with override_settings(AGENTS_PERSIST=setting):
            with self.assertRaises(SystemCheckError) as raised:
                call_command("check")
        self.assertIn(check_id, str(raised.exception))

    def test_bad_urls_are_E001(self) -> None:
        self.assert_check_fails_with({"default": {"URL": "nosuch://host/x"}}, "agents_persist.E001")
        self.assert_check_fails_with({"default": {"URL": "localhost:6379"}}, "agents_persist.E001")
        self.assert_check_fails_with({"default": {"URL": 42}}, "agents_persist.E001")

    def test_bad_options_are_E002(self) -> None:
        self.assert_check_fails_with({"default": {"URL": "redis://127.0.0.1:1/0", "OPTIONS": {"tll": 5}}}, "agents_persist.E002")
        self.assert_check_fails_with({"default": {"URL": "sqlite:///x.db", "OPTIONS": {"timeout": -1}}}, "agents_persist.E002")
        self.assert_check_fails_with({"default": {"URL": "sqlite:///x.db?timeout=soon"}}, "agents_persist.E002")
        self.assert_check_fails_with({"default": {"URL": "memory://", "OPTIONS": ["ttl"]}}, "agents_persist.E002")

    def test_malformed_setting_is_E003(self) -> None:
        self.assert_check_fails_with(["sqlite:///x.db"], "agents_persist.E003")
        self.assert_check_fails_with({"default": {"URL": "memory://", "LOCATION": "x"}}, "agents_persist.E003")

    def test_valid_setting_passes_without_connecting(self) -> None:
        unreachable = {
            "default": {"URL": "postgresql://nobody@127.0.0.1:1/none", "OPTIONS": {"timeout": 1}},
            "cache": {"URL": "redis://127.0.0.1:1/0?ttl=60", "OPTIONS": {"max_connections": 4}},
        }
        started = time.monotonic()
        with override_settings(AGENTS_PERSIST=unreachable):
            call_command("check")  # no server listens on port 1: a check that connected would fail or hang
            self.assertEqual(checkpointers.all(initialized_only=True), [])
        self.assertLess(time.monotonic() - started, 5)

    def test_options_of_an_alias_without_url_are_checked_against_the_default_urls_backend(self) -> None:
        without_url = {"default": {"OPTIONS": {"timeout": 1, "max_connections": 2}}}
        with mock.patch.dict(os.environ, {"AGENTS_PERSIST_URL": "redis://127.0.0.1:1/0"}):
            with override_settings(AGENTS_PERSIST=without_url):
                call_command("check")  # Redis options: fine
        with mock.patch.dict(os.environ, {"AGENTS_PERSIST_URL": "nosuch://x"}):
            self.assert_check_fails_with(without_url, "agents_persist.E001")


class ManagementCommandTests(TestCase):
    def test_any_subcommand_is_forwarded_to_the_cli_with_the_alias_url(self) -> None:
        with mock.patch("agents_persist.cli.main", return_value=0) as main:
            call_command("agents_persist", "export", "--out", "dump.jsonl", "--prefix", "a:", alias="other")
            call_command("agents_persist", "purge-expired")
        other, default = settings.AGENTS_PERSIST["other"]["URL"], settings.AGENTS_PERSIST["default"]["URL"]
        self.assertEqual(
            [c.args[0] for c in main.call_args_list],
            [["--url", other, "export", "--out", "dump.jsonl", "--prefix", "a:"], ["--url", default, "purge-expired"]],
        )

    def test_cli_failure_is_a_command_error_with_its_status(self) -> None:
        out, missing, err = io.StringIO(), io.StringIO(), io.StringIO()
        with self.assertRaises(CommandError) as raised:
            call_command("agents_persist", "show", "missing-thread", stdout=out, stderr=missing)
        self.assertEqual(raised.exception.returncode, 3)  # the CLI's "not found" (docs/cli.rst)
        self.assertEqual(out.getvalue(), "")
        self.assertEqual(missing.getvalue().count("\n"), 1)  # the CLI's one line, captured once
        self.assertIn("thread 'missing-thread' not found", missing.getvalue())
        with self.assertRaises(CommandError) as usage:
            call_command("agents_persist", "no-such-subcommand", stderr=err)
        self.assertEqual(usage.exception.returncode, 2)
        self.assertIn("invalid choice: 'no-such-subcommand'", err.getvalue())
