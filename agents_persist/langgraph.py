"""LangGraph checkpointer: :class:`Checkpointer`, a ``BaseCheckpointSaver`` over any agents_persist store.

.. code-block:: python

   from agents_persist import from_url
   from agents_persist.langgraph import Checkpointer

   saver = Checkpointer(from_url("sqlite:///agents.db"))
   graph = builder.compile(checkpointer=saver)
   graph.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "user-42"}})

Layout: each ``(thread_id, checkpoint_ns)`` is one thread of the underlying
store, ``<prefix><thread_id>/<checkpoint_ns>/c``, whose message log holds one
record per checkpoint and one per ``put_writes`` call, appended (never
rewritten) with the store's compare-and-set ``append``. A checkpoint record
holds the values of the channels that changed in that step and, for the
others, where they are stored (the position of an earlier record). List
values (the ``messages`` channel) are stored item by item in their own
append-only log (``.../i/<token>``): a step that adds two messages to a list
of a thousand appends two items, and the checkpoint refers to the list as
ranges of that log. The latest checkpoint is read from the tail of the log,
never by replaying the history.

Needs LangGraph (``pip install "agents_persist[langgraph]"``); ``import
agents_persist`` never imports it.
"""

from __future__ import annotations

import asyncio
import base64
import random
import threading
import time
import uuid
from collections import OrderedDict
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Generic,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import quote, unquote

from .extras import missing_extra

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        PendingWrite,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without langgraph
    raise missing_extra("agents_persist.langgraph", "LangGraph", "langgraph", exc) from exc

import agents_persist

from .checkpointer import Checkpointer as _Backend
from .errors import ConflictError
from .models import AgentMessage, AgentStateSnapshot
from .runtime.locks import LockRegistry
from .urls import from_url

__all__ = ["Checkpointer", "DEFAULT_PREFIX"]

#: Thread IDs of the underlying store start with this unless told otherwise.
DEFAULT_PREFIX = "langgraph:"

# Record kinds, kept in AgentMessage.name (role "system", content a JSON-like dict or list).
_CHECKPOINT = "langgraph.checkpoint"
_WRITES = "langgraph.writes"
_ITEM = "langgraph.item"
#: A value stored as serde output: ["b", type, base64]; a list stored item by item: ["i", token, [[start, stop], ...]];
#: a channel without a value: ["e"].
_EMPTY: List[Any] = ["e"]
#: How many records the first tail read takes when looking for the latest checkpoint (then 4x more each time).
_TAIL = 16
#: Records per page when walking a log backwards.
_PAGE = 256

K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A small thread-safe least-recently-used dict."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: "OrderedDict[K, V]" = OrderedDict()
        self._mutex = threading.Lock()

    def get(self, key: K) -> Optional[V]:
        with self._mutex:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._mutex:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        with self._mutex:
            self._data.pop(key, None)

    def drop(self, keep: Callable[[K], bool]) -> None:
        """Forget every entry whose key ``keep`` refuses."""
        with self._mutex:
            for key in [key for key in self._data if not keep(key)]:
                del self._data[key]


class _Head(NamedTuple):
    """A log's stored version and length, as known to this process (they change together)."""

    version: int
    length: int


class _Latest(NamedTuple):
    """The last checkpoint this process wrote or read in one log: where every channel's value is."""

    checkpoint_id: str
    position: int
    #: channel -> [version, position of the record holding the value inline, that record's checkpoint ID]
    locations: Dict[str, List[Any]]


class _ListValue(NamedTuple):
    """The last list value of one channel known to this process, item by item, to store the next one as a delta."""

    token: Optional[str]
    segments: List[List[int]]
    objects: List[Any]
    encoded: List[List[str]]


class _Record(NamedTuple):
    """One decoded record of a checkpoint log."""

    position: int
    kind: str
    content: Dict[str, Any]


def _quote(text: str) -> str:
    return quote(text, safe="")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


class Checkpointer(BaseCheckpointSaver[str]):
    """A LangGraph checkpoint saver storing through an agents_persist checkpointer (any backend).

    Every ``put`` and ``put_writes`` is one append of the new data to the
    thread's log (compare-and-set on the log's version: two processes
    writing one LangGraph thread never lose a checkpoint); ``get_tuple`` of
    the latest checkpoint reads the tail of the log and the few records it
    points to. Async methods run the sync ones in the default executor.

    Args:
        backend: An agents_persist checkpointer (``from_url(...)``,
            ``SqliteCheckpointer(...)``, ...) or a URL for
            :func:`~agents_persist.from_url`. A URL's checkpointer is closed
            by :meth:`close`; a given one is left open.
        prefix: Thread IDs of the store used by this saver start with it
            (``<prefix><thread_id>/<checkpoint_ns>/...``); several savers with
            different prefixes can share one store.
        serde: LangGraph's serializer (default: ``JsonPlusSerializer``); its
            ``dumps_typed`` bytes are stored as base64 text.
        cache_size: How many LangGraph threads' latest positions and list
            values this process remembers (to append deltas without reading).
        reuse_loaded_values: Return the list items this process last stored
            or loaded for a thread (the same objects) when the checkpoint read
            refers to exactly those, instead of decoding them again: reading
            the latest checkpoint then costs the same at 10 messages and at
            1,000. Off by default: the objects are shared between the runs of
            a thread in this process, so a node that changes a message in
            place would change it for the next run too (LangGraph's reducers
            never do; they replace messages).
    """

    def __init__(
        self,
        backend: Union[agents_persist.Checkpointer, str],
        *,
        prefix: str = DEFAULT_PREFIX,
        serde: Optional[SerializerProtocol] = None,
        cache_size: int = 256,
        reuse_loaded_values: bool = False,
    ) -> None:
        super().__init__(serde=serde)
        self._owns_backend = isinstance(backend, str)
        self.backend: _Backend = from_url(backend) if isinstance(backend, str) else backend
        self.prefix = prefix
        self.reuse_loaded_values = reuse_loaded_values
        self._locks = LockRegistry()
        self._heads: _Lru[str, _Head] = _Lru(cache_size * 4)
        self._latest: _Lru[str, _Latest] = _Lru(cache_size)
        self._lists: _Lru[Tuple[str, str], _ListValue] = _Lru(cache_size * 2)
        self._records: _Lru[Tuple[str, int], _Record] = _Lru(cache_size * 16)
        #: The newest checkpoint ID known to be stored, per log (what ``put_writes`` waits for; see there).
        self._newest: _Lru[str, str] = _Lru(cache_size * 4)
        self._stored = threading.Condition()
        #: Seconds ``put_writes`` waits for its checkpoint's ``put`` (running in another thread) to be stored first.
        self.write_order_timeout = 5.0
        #: How many appends found another writer first and were retried on the fresh log (a statistic).
        self.append_retries = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "Checkpointer":
        """A saver over ``from_url(url)``, closed with the saver; ``options`` go to :class:`Checkpointer`."""
        return cls(url, **options)

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Close the underlying checkpointer if this saver opened it from a URL."""
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "Checkpointer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ keys

    def _thread_prefix(self, thread_id: str) -> str:
        return f"{self.prefix}{_quote(thread_id)}/"

    def _log_key(self, thread_id: str, ns: str) -> str:
        return f"{self._thread_prefix(thread_id)}{_quote(ns)}/c"

    def _items_key(self, log_key: str, token: str) -> str:
        return f"{log_key[:-1]}i/{token}"

    def _parse_log_key(self, key: str) -> Optional[Tuple[str, str]]:
        if not key.startswith(self.prefix) or not key.endswith("/c"):
            return None
        parts = key[len(self.prefix) : -2].split("/")
        if len(parts) != 2:
            return None
        return unquote(parts[0]), unquote(parts[1])

    def _log_keys(self, prefix: str) -> Iterator[str]:
        for info in self.backend.iter_threads(prefix):
            if self._parse_log_key(info.thread_id) is not None:
                yield info.thread_id

    def _forget(self, prefix: str) -> None:
        self._heads.drop(lambda key: not key.startswith(prefix))
        self._newest.drop(lambda key: not key.startswith(prefix))
        self._latest.drop(lambda key: not key.startswith(prefix))
        self._lists.drop(lambda key: not key[0].startswith(prefix))
        self._records.drop(lambda key: not key[0].startswith(prefix))

    # ------------------------------------------------------------------ encoding

    def _dump(self, value: Any) -> List[str]:
        kind, data = self.serde.dumps_typed(value)
        return [kind, _b64(data)]

    def _load(self, encoded: Sequence[str]) -> Any:
        return self.serde.loads_typed((encoded[0], base64.b64decode(encoded[1])))

    # ------------------------------------------------------------------ appends

    def _fresh_head(self, key: str) -> _Head:
        """The stored version and length of ``key``, read consistently (the version did not move in between)."""
        while True:
            before = self.backend.get_version(key)
            count = self.backend.message_count(key)
            if self.backend.get_version(key) == before:
                return _Head(before, count if before else 0)

    def _append(self, key: str, build: Callable[[int], List[AgentMessage]]) -> int:
        """Append the records ``build(start)`` to ``key`` at the end of its log; return ``start``.

        The append checks the log's version, so ``start`` is exactly where the
        records landed; another writer first means a fresh read and a retry.
        """
        with self._locks.hold(key):
            head = self._heads.get(key) or self._fresh_head(key)
            for _ in range(self.backend.max_retries + 1):
                records = build(head.length)
                try:
                    version = self.backend.append(key, records, expected_version=head.version)
                except ConflictError:
                    self.append_retries += 1
                    self._heads.pop(key)
                    head = self._fresh_head(key)
                    continue
                self._heads.put(key, _Head(version, head.length + len(records)))
                return head.length
            raise ConflictError(f"{key!r}: other writers kept appending first", thread_id=key)

    # ------------------------------------------------------------------ reading logs

    def _decode(self, position: int, message: AgentMessage) -> _Record:
        content = message.content if isinstance(message.content, dict) else {}
        return _Record(position, message.name or "", content)

    def _read(self, key: str, start: int, stop: Optional[int]) -> List[_Record]:
        """Records ``[start:stop]`` of ``key`` (absolute positions)."""
        return [self._decode(start + i, m) for i, m in enumerate(self.backend.load_messages(key, start, stop))]

    def _tail_pages(self, key: str) -> Iterator[List[_Record]]:
        """The log of ``key`` backwards, page by page (each page in log order), starting with a short tail."""
        count = self.backend.message_count(key)
        stop, size = count, _TAIL
        while stop > 0:
            start = max(0, stop - size)
            page = self._read(key, start, stop)
            if not page:
                return
            yield page
            stop, size = start, _PAGE

    def _record_at(self, key: str, position: int, checkpoint_id: str) -> Optional[_Record]:
        """The checkpoint record ``checkpoint_id`` expected at ``position`` (found by a scan if the log was rewritten)."""
        cached = self._records.get((key, position))
        if cached is not None and cached.content.get("id") == checkpoint_id:
            return cached
        found = self._read(key, position, position + 1)
        if found and found[0].kind == _CHECKPOINT and found[0].content.get("id") == checkpoint_id:
            self._records.put((key, position), found[0])
            return found[0]
        for page in self._tail_pages(key):
            for record in page:
                if record.kind == _CHECKPOINT and record.content.get("id") == checkpoint_id:
                    self._records.put((key, record.position), record)
                    return record
        return None

    def _find(self, key: str, checkpoint_id: Optional[str]) -> Optional[Tuple[_Record, List[_Record]]]:
        """The checkpoint record ``checkpoint_id`` (None: the latest) of ``key`` and the records after it."""
        latest = self._latest.get(key)
        if checkpoint_id is not None and latest is not None and latest.checkpoint_id == checkpoint_id:
            after = self._read(key, latest.position, None)
            if after and after[0].kind == _CHECKPOINT and after[0].content.get("id") == checkpoint_id:
                return after[0], after[1:]
        seen: List[_Record] = []
        for page in self._tail_pages(key):
            for index in range(len(page) - 1, -1, -1):
                record = page[index]
                if record.kind == _CHECKPOINT and (checkpoint_id is None or record.content.get("id") == checkpoint_id):
                    if checkpoint_id is None:
                        self._saw_stored(key, str(record.content["id"]))
                    # Writes normally follow their checkpoint; those that came first (see put_writes) are in this page.
                    return record, page[index + 1 :] + seen + page[:index]
            seen = page + seen
        return None

    # ------------------------------------------------------------------ channel values

    def _store_list(self, log_key: str, channel: str, value: List[Any]) -> List[Any]:
        """Store list ``value`` as items, appending only what is not already stored; return its reference."""
        known = self._lists.get((log_key, channel))
        objects = list(value)
        encoded: List[List[str]] = []
        same = 0
        if known is not None and known.token is not None:
            limit = min(len(objects), len(known.objects))
            while same < limit:
                if objects[same] is not known.objects[same]:
                    candidate = self._dump(objects[same])
                    if candidate != known.encoded[same]:
                        break
                same += 1
            encoded = known.encoded[:same]
            segments = _truncate(known.segments, same)
            token: Optional[str] = known.token
        else:
            segments, token = [], None
        new = [self._dump(item) for item in objects[same:]]
        if new:
            if token is None:
                token = uuid.uuid4().hex[:16]
            items_key = self._items_key(log_key, token)
            start = self._append(items_key, lambda _start: [AgentMessage(role="system", name=_ITEM, content=e) for e in new])
            if segments and start < max(stop for _start, stop in segments):
                # The item log was deleted meanwhile (delete_thread, prune): what it held is gone; store the list anew.
                self._lists.pop((log_key, channel))
                return self._store_list(log_key, channel, value)
            if segments and segments[-1][1] == start:
                segments[-1] = [segments[-1][0], start + len(new)]
            else:
                segments.append([start, start + len(new)])
            encoded = encoded + new
        self._lists.put((log_key, channel), _ListValue(token, segments, objects, encoded))
        return ["i", token, segments]

    def _load_list(self, log_key: str, channel: str, reference: List[Any]) -> List[Any]:
        token, segments = reference[1], [list(s) for s in reference[2]]
        known = self._lists.get((log_key, channel))
        if known is not None and known.token == token and known.segments == segments:
            if self.reuse_loaded_values:
                return list(known.objects)
            encoded = known.encoded
        else:
            encoded = []
            if token is not None:
                items_key = self._items_key(log_key, token)
                for start, stop in segments:
                    items = self.backend.load_messages(items_key, start, stop)
                    encoded.extend([list(m.content) for m in items if isinstance(m.content, list)])
        objects = [self._load(e) for e in encoded]
        self._lists.put((log_key, channel), _ListValue(token, segments, list(objects), list(encoded)))
        return objects

    def _store_value(self, log_key: str, channel: str, value: Any) -> List[Any]:
        if type(value) is list:
            return self._store_list(log_key, channel, value)
        return ["b", *self._dump(value)]

    def _load_value(self, log_key: str, channel: str, stored: List[Any]) -> Any:
        if stored[0] == "i":
            return self._load_list(log_key, channel, stored)
        return self._load(stored[1:])

    # ------------------------------------------------------------------ tuples

    def _locations(self, key: str, record: _Record) -> Dict[str, List[Any]]:
        """Where each channel of checkpoint ``record`` is stored."""
        content = record.content
        where = {channel: list(loc) for channel, loc in content.get("locs", {}).items()}
        for channel, (version, _stored) in content.get("vals", {}).items():
            where[channel] = [version, record.position, content["id"]]
        return where

    def _tuple(self, key: str, thread_id: str, ns: str, record: _Record, after: Sequence[_Record]) -> CheckpointTuple:
        content = record.content
        checkpoint: Checkpoint = self._load(content["cp"])
        values: Dict[str, Any] = {}
        for channel, (_version, stored) in content.get("vals", {}).items():
            if stored[0] != "e":
                values[channel] = self._load_value(key, channel, stored)
        for channel, (_version, position, holder) in content.get("locs", {}).items():
            source = self._record_at(key, position, holder)
            found = source.content.get("vals", {}).get(channel) if source is not None else None
            if found is not None and found[1][0] != "e":
                values[channel] = self._load_value(key, channel, found[1])
        checkpoint["channel_values"] = values
        self._latest.put(key, _Latest(content["id"], record.position, self._locations(key, record)))
        parent = content.get("parent")
        return CheckpointTuple(
            config=_config(thread_id, ns, content["id"]),
            checkpoint=checkpoint,
            metadata=self._load(content["meta"]),
            parent_config=_config(thread_id, ns, parent) if parent else None,
            pending_writes=self._pending_writes(content["id"], after),
        )

    def _pending_writes(self, checkpoint_id: str, records: Sequence[_Record]) -> List[PendingWrite]:
        """The writes of ``checkpoint_id`` among ``records``: a regular write's first copy, a special write's last."""
        found: Dict[Tuple[str, int], Tuple[Tuple[str, str, int], PendingWrite]] = {}
        for record in records:
            content = record.content
            if record.kind != _WRITES or content.get("cp") != checkpoint_id:
                continue
            task_id, path = content["task"], content.get("path", "")
            for idx, channel, value in content["w"]:
                if idx >= 0 and (task_id, idx) in found:
                    continue
                found[(task_id, idx)] = (writes_sort_key(path, task_id, idx), (task_id, channel, self._load(value)))
        return [write for _key, write in sorted(found.values(), key=lambda entry: entry[0])]

    # ------------------------------------------------------------------ BaseCheckpointSaver (sync)

    def get_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        """The checkpoint ``config`` names (its ``checkpoint_id``, else the latest of the thread and namespace)."""
        configurable = config["configurable"]
        thread_id, ns = str(configurable["thread_id"]), configurable.get("checkpoint_ns", "")
        key = self._log_key(thread_id, ns)
        found = self._find(key, get_checkpoint_id(config))
        if found is None:
            return None
        return self._tuple(key, thread_id, ns, *found)

    def list(
        self,
        config: Optional[RunnableConfig],
        *,
        filter: Optional[Dict[str, Any]] = None,
        before: Optional[RunnableConfig] = None,
        limit: Optional[int] = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first (per namespace, in the order they were appended), filtered by metadata."""
        configurable = (config or {}).get("configurable", {})
        if "thread_id" not in configurable:
            keys: Iterator[str] = self._log_keys(self.prefix)
        elif "checkpoint_ns" in configurable:
            keys = iter([self._log_key(str(configurable["thread_id"]), configurable["checkpoint_ns"])])
        else:
            keys = self._log_keys(self._thread_prefix(str(configurable["thread_id"])))
        wanted_id = configurable.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before is not None else None
        remaining = limit
        for key in keys:
            parsed = self._parse_log_key(key)
            assert parsed is not None
            for tup in self._list_log(key, *parsed, filter or {}, wanted_id, before_id):
                if remaining is not None and remaining <= 0:
                    return
                yield tup
                if remaining is not None:
                    remaining -= 1

    def _list_log(
        self,
        key: str,
        thread_id: str,
        ns: str,
        filter: Dict[str, Any],
        wanted_id: Optional[str],
        before_id: Optional[str],
    ) -> Iterator[CheckpointTuple]:
        seen: List[_Record] = []
        for page in self._tail_pages(key):
            for index in range(len(page) - 1, -1, -1):
                record = page[index]
                if record.kind != _CHECKPOINT:
                    continue
                checkpoint_id = str(record.content["id"])
                if wanted_id is not None and checkpoint_id != wanted_id:
                    continue
                if before_id is not None and not checkpoint_id < before_id:
                    continue
                if filter:
                    metadata = self._load(record.content["meta"])
                    if not all(metadata.get(k) == v for k, v in filter.items()):
                        continue
                self._records.put((key, record.position), record)
                yield self._tuple(key, thread_id, ns, record, page[index + 1 :] + seen + page[:index])
            seen = page + seen

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Append ``checkpoint`` to its thread's log: the changed channels' values, and where the others are."""
        configurable = config["configurable"]
        thread_id, ns = str(configurable["thread_id"]), configurable.get("checkpoint_ns", "")
        parent_id = configurable.get("checkpoint_id")
        key = self._log_key(thread_id, ns)
        copy: Dict[str, Any] = dict(checkpoint)
        values: Dict[str, Any] = copy.pop("channel_values")
        with self._locks.hold(key):
            parent_locations = self._parent_locations(key, parent_id)
            stored_values: Dict[str, List[Any]] = {}
            locations: Dict[str, List[Any]] = {}
            for channel, version in checkpoint["channel_versions"].items():
                if channel in new_versions:
                    stored = self._store_value(key, channel, values[channel]) if channel in values else _EMPTY
                    stored_values[channel] = [version, stored]
                elif channel in parent_locations and parent_locations[channel][0] == version:
                    locations[channel] = parent_locations[channel]
                else:
                    found = self._find_version(key, channel, version)
                    if found is not None:
                        locations[channel] = found
            content = {
                "id": checkpoint["id"],
                "parent": parent_id,
                "cp": self._dump(copy),
                "meta": self._dump(get_checkpoint_metadata(config, metadata)),
                "vals": stored_values,
                "locs": locations,
            }
            position = self._append(key, lambda start: [AgentMessage(role="system", name=_CHECKPOINT, content=content)])
            record = _Record(position, _CHECKPOINT, content)
            self._records.put((key, position), record)
            self._latest.put(key, _Latest(checkpoint["id"], position, self._locations(key, record)))
        self._saw_stored(key, checkpoint["id"])
        return _config(thread_id, ns, checkpoint["id"])

    def _saw_stored(self, key: str, checkpoint_id: str) -> None:
        """Note that ``checkpoint_id`` is stored in ``key`` (and wake ``put_writes`` calls waiting for it)."""
        with self._stored:
            newest = self._newest.get(key)
            if newest is None or checkpoint_id > newest:
                self._newest.put(key, checkpoint_id)
            self._stored.notify_all()

    def _wait_until_stored(self, key: str, checkpoint_id: str) -> None:
        """Wait (up to ``write_order_timeout``) until ``checkpoint_id`` or a newer checkpoint of ``key`` is stored.

        LangGraph saves in background threads and does not wait for a step's
        ``put`` before sending the writes of the step's tasks: without this
        wait they could be appended before the checkpoint they belong to.
        Checkpoint IDs grow with time, so an ID not newer than the newest
        stored one is stored already (or never will be by this process).
        """
        if self._newest.get(key) is None:
            self._find(key, None)  # a tail read: learn the newest stored checkpoint
        deadline = time.monotonic() + self.write_order_timeout
        with self._stored:
            while True:
                newest = self._newest.get(key)
                remaining = deadline - time.monotonic()
                if (newest is not None and checkpoint_id <= newest) or remaining <= 0:
                    return
                self._stored.wait(remaining)

    def _parent_locations(self, key: str, parent_id: Optional[str]) -> Dict[str, List[Any]]:
        if parent_id is None:
            return {}
        latest = self._latest.get(key)
        if latest is not None and latest.checkpoint_id == parent_id:
            return latest.locations
        found = self._find(key, parent_id)
        return self._locations(key, found[0]) if found is not None else {}

    def _find_version(self, key: str, channel: str, version: Any) -> Optional[List[Any]]:
        """Where the value of ``channel`` at ``version`` is stored in ``key`` (a backwards scan; rare)."""
        for page in self._tail_pages(key):
            for record in reversed(page):
                stored = record.content.get("vals", {}).get(channel) if record.kind == _CHECKPOINT else None
                if stored is not None and stored[0] == version:
                    return [version, record.position, record.content["id"]]
        return None

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[Tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Append one record with the writes of ``task_id`` for the checkpoint ``config`` names."""
        configurable = config["configurable"]
        thread_id, ns = str(configurable["thread_id"]), configurable.get("checkpoint_ns", "")
        entries = [[WRITES_IDX_MAP.get(channel, idx), channel, self._dump(value)] for idx, (channel, value) in enumerate(writes)]
        content = {"cp": configurable["checkpoint_id"], "task": task_id, "path": task_path, "w": entries}
        key = self._log_key(thread_id, ns)
        self._wait_until_stored(key, str(configurable["checkpoint_id"]))
        self._append(key, lambda start: [AgentMessage(role="system", name=_WRITES, content=content)])

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, write and list item of ``thread_id``, in every namespace."""
        prefix = self._thread_prefix(str(thread_id))
        for info in list(self.backend.iter_threads(prefix)):
            self.backend.delete(info.thread_id)
        self._forget(prefix)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every namespace of ``source_thread_id`` (checkpoints, writes, list items) to ``target_thread_id``."""
        source, target = self._thread_prefix(str(source_thread_id)), self._thread_prefix(str(target_thread_id))
        for info in list(self.backend.iter_threads(source)):
            snapshot = self.backend.load(info.thread_id)
            if snapshot is not None:
                copy = AgentStateSnapshot(messages=list(snapshot.messages))
                self.backend.save(target + info.thread_id[len(source) :], copy, force=True)
        self._forget(target)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep only each namespace's latest checkpoint and its writes; ``"delete"``: delete all."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r} (keep_latest or delete)")
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            for key in list(self._log_keys(self._thread_prefix(str(thread_id)))):
                kept = self._rewrite(key, _keep_latest)
                tokens = {stored[1] for _version, stored in kept if stored[0] == "i" and stored[1] is not None}
                items_prefix = key[:-1] + "i/"
                for info in list(self.backend.iter_threads(items_prefix)):
                    if info.thread_id[len(items_prefix) :] not in tokens:
                        self.backend.delete(info.thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata ``run_id`` is one of ``run_ids``, in every thread."""
        runs = set(run_ids)
        if not runs:
            return
        for key in list(self._log_keys(self.prefix)):

            def drop(records: List[_Record], runs: "set[str]" = runs) -> List[_Record]:
                doomed = {
                    r.content["id"]
                    for r in records
                    if r.kind == _CHECKPOINT and self._load(r.content["meta"]).get("run_id") in runs
                }
                return [
                    r
                    for r in records
                    if not (r.kind == _CHECKPOINT and r.content["id"] in doomed)
                    and not (r.kind == _WRITES and r.content.get("cp") in doomed)
                ]

            self._rewrite(key, drop)

    def _rewrite(self, key: str, choose: Callable[[List[_Record]], List[_Record]]) -> List[Tuple[Any, List[Any]]]:
        """Replace the log of ``key`` by the records ``choose`` keeps (compare-and-set, retried).

        Kept checkpoints whose channels pointed at dropped records get those
        values inline; positions are renumbered. Returns the stored values
        (version, reference) of the kept checkpoints.
        """
        kept_values: List[Tuple[Any, List[Any]]] = []

        def apply(snapshot: AgentStateSnapshot) -> None:
            records = [self._decode(i, m) for i, m in enumerate(snapshot.messages)]
            by_position = {r.position: r for r in records}
            kept = choose(records)
            if len(kept) == len(records):
                return
            new_position = {r.position: i for i, r in enumerate(kept)}
            messages: List[AgentMessage] = []
            kept_values.clear()
            for record in kept:
                content = dict(record.content)
                if record.kind == _CHECKPOINT:
                    stored_values = dict(content.get("vals", {}))
                    locations: Dict[str, List[Any]] = {}
                    for channel, (version, position, holder) in content.get("locs", {}).items():
                        if position in new_position and by_position[position].content.get("id") == holder:
                            locations[channel] = [version, new_position[position], holder]
                        elif position in by_position and channel in by_position[position].content.get("vals", {}):
                            stored_values[channel] = by_position[position].content["vals"][channel]
                    content["vals"], content["locs"] = stored_values, locations
                    kept_values.extend((version, stored) for version, stored in stored_values.values())
                messages.append(AgentMessage(role="system", name=record.kind, content=content))
            snapshot.messages[:] = messages

        with self._locks.hold(key):
            self.backend.update(key, apply)
            if self.backend.message_count(key) == 0:
                self.backend.delete(key)
            self._heads.pop(key)
            self._latest.pop(key)
            self._newest.pop(key)
            self._records.drop(lambda k: k[0] != key)
            self._lists.drop(lambda k: k[0] != key)
        return kept_values

    def get_next_version(self, current: Optional[str], channel: None) -> str:
        """``"<counter>.<random>"`` versions, as LangGraph's own savers use (forks never reuse a version)."""
        if current is None:
            counter = 0
        elif isinstance(current, int):
            counter = current
        else:
            counter = int(str(current).split(".")[0])
        return f"{counter + 1:032}.{random.random():016}"

    # ------------------------------------------------------------------ BaseCheckpointSaver (async)

    async def aget_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: Optional[RunnableConfig],
        *,
        filter: Optional[Dict[str, Any]] = None,
        before: Optional[RunnableConfig] = None,
        limit: Optional[int] = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(lambda: [*self.list(config, filter=filter, before=before, limit=limit)])
        for tup in found:
            yield tup

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[Tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(lambda: self.prune(thread_ids, strategy=strategy))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)


def _truncate(segments: List[List[int]], length: int) -> List[List[int]]:
    """The first ``length`` items of a list stored as ``segments`` (ranges of an item log)."""
    kept: List[List[int]] = []
    for start, stop in segments:
        if length <= 0:
            break
        take = min(stop - start, length)
        kept.append([start, start + take])
        length -= take
    return kept


def _keep_latest(records: List[_Record]) -> List[_Record]:
    """The last checkpoint record and its writes."""
    latest = next((r for r in reversed(records) if r.kind == _CHECKPOINT), None)
    if latest is None:
        return []
    return [latest] + [r for r in records if r.kind == _WRITES and r.content.get("cp") == latest.content["id"]]

