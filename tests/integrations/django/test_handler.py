"""The handler's own lock survives a fork taken while another thread builds a checkpointer."""

from __future__ import annotations

import os
import threading

import pytest

from agents_persist.django import CheckpointerHandler


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_the_lock_is_held_can_use_the_handler() -> None:
    handler = CheckpointerHandler()
    held, release = threading.Event(), threading.Event()

    def builder() -> None:  # stands in for a thread inside checkpointers[alias], connecting
        with handler._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=builder)
    thread.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: no builder thread here, so a copied held lock would never be released
            os._exit(0 if handler._lock.acquire(timeout=2) else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        thread.join()
    assert os.WEXITSTATUS(status) == 0
