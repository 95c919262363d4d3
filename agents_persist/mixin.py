"""AgentStateMixin: ``save_state``/``load_state`` for any agent class."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from .checkpointer import Checkpointer
from .models import AgentMessage, AgentStateSnapshot, HitlInterrupt, TodoItem

__all__ = ["AgentStateMixin"]


class AgentStateMixin:
    """Gives an agent ``save_state(thread_id)`` and ``load_state(thread_id) -> bool``.

    The agent keeps its state in four attributes (``messages``, ``todos``,
    ``current_interrupt``, ``state_metadata``) and a ``checkpointer``. The
    mixin keeps the snapshot it last loaded or saved, so repeated saves append
    only new messages and a concurrent save by another worker raises
    ``ConflictError`` instead of being overwritten. A ``load_state`` that
    finds nothing resets the agent and remembers that the thread must not
    exist yet: if another worker creates it first, ``save_state`` raises
    ``ConflictError``. Saving under a thread ID the agent did not load
    creates that thread (``ConflictError`` if it exists) unless ``force=True``.

    Example::

        class MyAgent(AgentStateMixin):
            def __init__(self, checkpointer):
                self.checkpointer = checkpointer

        agent = MyAgent(from_url("sqlite:///agents.db"))
        if not agent.load_state("user-123"):
            agent.messages.append(AgentMessage.system("You are helpful."))
        agent.save_state("user-123")
    """

    checkpointer: Checkpointer
    messages: List[AgentMessage]
    todos: List[TodoItem]
    current_interrupt: Optional[HitlInterrupt]
    state_metadata: Dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        # Defaults for agents that never set their state attributes.
        defaults: Dict[str, Callable[[], Any]] = {
            "messages": list,
            "todos": list,
            "state_metadata": dict,
            "current_interrupt": lambda: None,
        }
        if name in defaults:
            value = defaults[name]()
            setattr(self, name, value)
            return value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def save_state(self, thread_id: str, *, force: bool = False) -> int:
        """Save the agent's state under ``thread_id``; return the new version."""
        snapshot: Optional[AgentStateSnapshot] = self.__dict__.get("_persisted_snapshot")
        if snapshot is None or snapshot.thread_id != thread_id:
            snapshot = AgentStateSnapshot()  # not loaded from this thread: a save creates it
        snapshot.messages = list(self.messages)
        snapshot.todos = list(self.todos)
        snapshot.current_interrupt = self.current_interrupt
        snapshot.metadata = dict(self.state_metadata)
        version = self.checkpointer.save(thread_id, snapshot, force=force)
        self.__dict__["_persisted_snapshot"] = snapshot
        return version

    def load_state(self, thread_id: str) -> bool:
        """Replace the agent's state by the one stored under ``thread_id``; False if none is stored.

        On False the agent's state is reset to empty (nothing of a previous
        thread stays behind) and the next ``save_state(thread_id)`` creates
        the thread, or raises ``ConflictError`` if someone created it meanwhile.
        """
        snapshot = self.checkpointer._load_or_new(thread_id)
        self.messages = list(snapshot.messages)
        self.todos = list(snapshot.todos)
        self.current_interrupt = snapshot.current_interrupt
        self.state_metadata = dict(snapshot.metadata)
        self.__dict__["_persisted_snapshot"] = snapshot
        return bool(snapshot.version)
