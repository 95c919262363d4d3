"""Item layout of :class:`~agents_persist.backends.dynamodb.DynamoDbCheckpointer`.

Pure functions and records, no I/O and no boto3: item sizes counted the way
AWS counts them, the length-prefixed message stream that chunk items carry,
run lists, keys and listing shards, which chunk items are a crashed writer's
left-overs, and the conversion between a thread's head item and
:class:`HeadState`.

One table, partition key ``thread_id`` (S), sort key ``sk`` (S):

* the **head** (``sk = "H"``): version ``v``, message count ``n``, digest
  ``d``, the encoded head ``h`` (or ``hr``, a run holding it when it is too
  big to sit inline), ``u`` updated_at and ``x`` expires_at (exact floats),
  a write token ``w`` that changes on every save (the compare-and-set
  target), the log's runs ``r``, ``k`` the earliest TTL of the log's chunk
  items, ``ls`` the listing shard, the TTL attribute, the thread's
  generation ``g`` (random per incarnation; absent on heads written before
  it existed, read as 0) and ``a``, the idempotency keys it applied with the
  version each produced (:func:`~agents_persist.codec.encode_applied`, at
  most 32, absent when none), and ``ri`` the runs' *index* for partial reads
  (:func:`encode_index`; absent on heads of older releases, which are then
  read whole);
* **chunk** items (``sk = "c<run>:<seq>"``): ``p``, a slice of a run's
  message stream, plus the TTL attribute.

A *run* is a sequence of chunk items written together under a fresh random
ID; the log is the concatenation of the runs the head lists, in order. A
chunk item is written once and never changed, and a run's chunks are
deleted only after a committed head stopped listing it, so a reader that
finds every chunk its head lists has one committed version whole.
"""

from __future__ import annotations

import bisect
import math
import re
import secrets
import struct
import zlib
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ...codec import EMPTY_DIGEST, decode_applied, encode_applied
from ...errors import CorruptSnapshotError, SnapshotTooLargeError

__all__ = [
    "MAX_ITEM_BYTES",
    "MAX_VERSION",
    "CHUNK_PAYLOAD_BYTES",
    "PK",
    "SK",
    "HEAD_SK",
    "Item",
    "Run",
    "HeadState",
    "item_size",
    "pack_messages",
    "unpack_messages",
    "split_payload",
    "new_run_id",
    "run_created_at",
    "chunk_sk",
    "chunk_prefix",
    "run_of_sk",
    "run_keys",
    "encode_runs",
    "decode_runs",
    "head_from_item",
    "head_item",
    "item_key",
    "shard_of",
    "checked_item",
    "stale_chunks",
    "RESERVED_ATTRIBUTES",
    "corrupt",
    "pending_entry",
    "is_chunk_sk",
    "read_int",
    "read_time",
    "read_bytes",
    "read_str",
    "RunIndex",
    "run_index",
    "extend_index",
    "encode_index",
    "decode_index",
    "covering_chunks",
    "take_messages",
    "WRITE_DEADLINE_SECONDS",
    "ORPHAN_GRACE_SECONDS",
]

#: AWS's item size limit, attribute names included.
MAX_ITEM_BYTES = 409_600
#: Stream bytes per chunk item: below AWS's limit and below moto's (405,000) with a 512-byte thread ID.
CHUNK_PAYLOAD_BYTES = 350_000

PK = "thread_id"
SK = "sk"
HEAD_SK = "H"
CHUNK_SK_PREFIX = "c"

# Head attribute names (short: names count toward every item's size).
A_VERSION = "v"
A_COUNT = "n"
A_DIGEST = "d"
A_HEAD = "h"
A_HEAD_RUN = "hr"
A_UPDATED = "u"
A_EXPIRES = "x"
A_TOKEN = "w"
A_RUNS = "r"
A_KEEP = "k"
A_SHARD = "ls"
A_PAYLOAD = "p"
A_GENERATION = "g"
A_APPLIED = "a"
A_PENDING = "pd"
A_GARBAGE = "gc"
A_INDEX = "ri"

#: Attribute names of the layout, which ``ttl_attribute`` must not reuse.
RESERVED_ATTRIBUTES = frozenset(
    {PK, SK, A_VERSION, A_COUNT, A_DIGEST, A_HEAD, A_HEAD_RUN, A_UPDATED, A_EXPIRES, A_TOKEN, A_RUNS, A_KEEP, A_SHARD}
    | {A_PAYLOAD, A_GENERATION, A_APPLIED, A_PENDING, A_GARBAGE, A_INDEX}
)

#: A save that writes chunks outside a transaction must commit within this many seconds ...
WRITE_DEADLINE_SECONDS = 600.0
#: ... so unreferenced runs older than this are left over by crashed writers and may be deleted.
ORPHAN_GRACE_SECONDS = 3600.0

#: Bounds of what a head may reference or hold, checked before anything is allocated or followed.
MAX_RUNS_LISTED = 1024
MAX_RUN_CHUNKS = 1_000_000
MAX_MESSAGES = 2**40
MAX_COUNTER = 2**63 - 1
#: The largest stored version a save can still increment within DynamoDB's signed 64-bit counters.
MAX_VERSION = MAX_COUNTER - 1
#: 10000-01-01T00:00:00Z: the first epoch second a ``datetime`` cannot hold.
MAX_TIMESTAMP = 253402300800.0

_RUN_ID = re.compile(r"[0-9a-f]{16}")
_CHUNKS = re.compile(r"[1-9][0-9]{0,6}")
_SEQ = re.compile(r"[0-9]{6,7}")
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_LENGTH = struct.Struct(">I")
_OPEN_MARK = "+"

#: A DynamoDB item in the low-level client's typed form: ``{"name": {"S": "..."}}``.
Item = Dict[str, Dict[str, Any]]


class Run(NamedTuple):
    """A run of chunk items ``c<run_id>:000000`` .. ``c<run_id>:<chunks - 1>``."""

    run_id: str
    chunks: int


class HeadState(NamedTuple):
    """What a head item says (``inline_head`` dropped when cached, unless small)."""

    token: str
    version: int
    message_count: int
    digest: bytes
    updated_at: float
    expires_at: Optional[float]
    runs: Tuple[Run, ...]
    open_run: bool
    keep_until: Optional[int]
    head_run: Optional[Run]
    inline_head: Optional[bytes]
    generation: int = 0
    applied: Tuple[Tuple[str, int], ...] = ()
    #: Runs writers registered before writing them outside a transaction, on top of this head (its token).
    pending: Tuple[Run, ...] = ()
    #: Runs the commit of this head made unreferenced: its writer deletes them, the next commit again.
    garbage: Tuple[Run, ...] = ()
    #: Per run, where its messages are (:class:`RunIndex`); None: unknown (a head of an older release).
    positions: Optional[Tuple["RunIndex", ...]] = None

    def all_runs(self) -> List[Run]:
        """Every run this head references: the log's and the spilled head's."""
        return list(self.runs) + ([self.head_run] if self.head_run is not None else [])


class RunIndex(NamedTuple):
    """Where a run's messages are: how many it holds, and for each of its chunks but the first,
    ``(f, o)``: ``f`` messages of the run begin before the chunk, and message ``f`` begins ``o``
    bytes into it (its 4-byte length prefix; ``o`` may reach past the chunk, into a later one)."""

    messages: int
    chunks: Tuple[Tuple[int, int], ...]


def _starts(stream: bytes) -> List[int]:
    """Where each message of a message stream begins (its length prefix)."""
    starts: List[int] = []
    unpack = _LENGTH.unpack_from
    offset, end = 0, len(stream)
    while offset + 4 <= end:
        starts.append(offset)
        offset += 4 + unpack(stream, offset)[0]
    return starts


def _pieces(stream: bytes, size: int) -> Tuple[int, List[Tuple[int, int]]]:
    """The message count of ``stream`` and ``(f, o)`` of each piece :func:`split_payload` cuts it into."""
    starts = _starts(stream)
    out = []
    for piece in range(0, len(stream), size):
        first = bisect.bisect_left(starts, piece)
        out.append((first, (starts[first] if first < len(starts) else len(stream)) - piece))
    return len(starts), out


def run_index(stream: bytes, size: int) -> RunIndex:
    """The index of a fresh run holding ``stream`` in chunks of ``size`` bytes."""
    count, pieces = _pieces(stream, size)
    return RunIndex(count, tuple(pieces[1:]))


def extend_index(index: RunIndex, stream: bytes, size: int) -> RunIndex:
    """The index of a run ``index`` describes after chunks holding ``stream`` were added to it."""
    count, pieces = _pieces(stream, size)
    return RunIndex(index.messages + count, index.chunks + tuple((index.messages + f, o) for f, o in pieces))


def encode_index(index: Sequence[RunIndex]) -> str:
    """``ri``: per run ``<messages>`` then ``:<f>.<o>`` per chunk after the first; runs joined by ``,``."""
    return ",".join(str(run.messages) + "".join(f":{f}.{o}" for f, o in run.chunks) for run in index)


def decode_index(text: str, runs: Sequence[Run], message_count: int) -> Optional[Tuple[RunIndex, ...]]:
    """The index ``ri`` holds, if it describes ``runs`` and ``message_count``; None otherwise (read whole)."""
    entries = text.split(",") if text else []
    if len(entries) != len(runs) or len(text) > MAX_ITEM_BYTES:
        return None
    index = []
    try:
        for entry, run in zip(entries, runs):
            count, *chunks = entry.split(":")
            pairs = tuple((int(f), int(o)) for f, o in (chunk.split(".") for chunk in chunks))
            if len(pairs) != run.chunks - 1 or not count.isdigit():
                return None
            firsts = [0, *(f for f, _ in pairs), int(count)]
            if any(b < a for a, b in zip(firsts, firsts[1:])) or any(o < 0 for _, o in pairs):
                return None
            index.append(RunIndex(int(count), pairs))
    except ValueError:
        return None
    return tuple(index) if sum(run.messages for run in index) == message_count else None


def covering_chunks(index: RunIndex, lo: int, hi: int) -> Tuple[int, int, int, int]:
    """``(first, last, f, o)``: the chunks ``first .. last`` of a run that hold its messages ``lo .. hi - 1``,
    and the message ``f`` (at most ``lo``) that begins ``o`` bytes into chunk ``first``."""
    firsts = [(0, 0), *index.chunks]
    # Messages f_j .. f_(j+1) - 1 begin in chunk j.
    bounds = [f for f, _ in firsts] + [index.messages]
    first = next(j for j in range(len(firsts)) if bounds[j] <= lo < bounds[j + 1])
    if hi >= index.messages:
        last = len(firsts) - 1
    else:
        last = next(j for j in range(len(firsts)) if bounds[j] <= hi < bounds[j + 1])
        if last > first and bounds[last] == hi and firsts[last][1] == 0:
            last -= 1  # message hi begins exactly at that chunk: the one before ends the slice
    return first, last, firsts[first][0], firsts[first][1]


def item_key(thread_id: str, sk: str) -> Item:
    """The primary key of one item of ``thread_id``."""
    return {PK: {"S": thread_id}, SK: {"S": sk}}


def shard_of(thread_id: str, shards: int) -> int:
    """The listing-index shard of a thread's head: stable across processes and versions."""
    return zlib.crc32(thread_id.encode("utf-8")) % shards


def _number_size(text: str) -> int:
    """AWS: one byte per two significant digits plus one byte (at most 21)."""
    digits = text.lstrip("-").split("e")[0].split("E")[0].replace(".", "").strip("0")
    return min(21, (len(digits) + 1) // 2 + 1)


def item_size(item: Item) -> int:
    """The size AWS charges against the 409,600-byte limit: names plus values.

    Only the scalar types this backend writes (S, N, B, BOOL, NULL) are
    supported.
    """
    total = 0
    for name, typed in item.items():
        total += len(name.encode("utf-8"))
        ((kind, value),) = typed.items()
        if kind == "S":
            total += len(value.encode("utf-8"))
        elif kind == "B":
            total += len(value)
        elif kind == "N":
            total += _number_size(value)
        elif kind in ("BOOL", "NULL"):
            total += 1
        else:  # pragma: no cover - programming error
            raise ValueError(f"item_size does not support type {kind}")
    return total


def checked_item(item: Item, thread_id: str) -> Item:
    """``item``, unless it exceeds AWS's item size limit.

    Raises:
        SnapshotTooLargeError: The item would be over :data:`MAX_ITEM_BYTES`.
    """
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise SnapshotTooLargeError(
            f"thread {thread_id!r}: a DynamoDB item would be {size} bytes, over the {MAX_ITEM_BYTES}-byte limit",
            thread_id=thread_id,
        )
    return item


def pack_messages(blobs: Sequence[bytes]) -> bytes:
    """The message stream: each encoded message prefixed by its 4-byte big-endian length."""
    pack = _LENGTH.pack
    return b"".join(part for blob in blobs for part in (pack(len(blob)), blob))


def unpack_messages(stream: bytes, count: int, thread_id: str) -> List[bytes]:
    """Split a message stream back into ``count`` encoded messages.

    Raises:
        CorruptSnapshotError: The stream does not hold exactly ``count`` whole messages.
    """
    out: List[bytes] = []
    append = out.append
    unpack = _LENGTH.unpack_from
    offset, end = 0, len(stream)
    try:
        while offset < end:
            (length,) = unpack(stream, offset)
            offset += 4
            if offset + length > end:
                raise ValueError("truncated message")
            append(stream[offset : offset + length])
            offset += length
    except (struct.error, ValueError) as exc:
        raise CorruptSnapshotError(
            f"thread {thread_id!r}: the stored message log is corrupt ({exc})", thread_id=thread_id
        ) from None
    if len(out) != count:
        raise CorruptSnapshotError(
            f"thread {thread_id!r}: head lists {count} messages but the log holds {len(out)}", thread_id=thread_id
        )
    return out


def take_messages(stream: bytes, offset: int, count: int, thread_id: str) -> List[bytes]:
    """``count`` encoded messages of a message stream, the first beginning ``offset`` bytes into it.

    Raises:
        CorruptSnapshotError: The stream ends before ``count`` whole messages.
    """
    out: List[bytes] = []
    unpack = _LENGTH.unpack_from
    end = len(stream)
    for _ in range(count):
        length = unpack(stream, offset)[0] if offset + 4 <= end else None
        if length is None or offset + 4 + length > end:
            raise corrupt(thread_id, "the message log", ValueError(f"it ends before the {count} messages its index names"))
        out.append(stream[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return out


def split_payload(data: bytes, size: int = CHUNK_PAYLOAD_BYTES) -> List[bytes]:
    """Cut ``data`` into pieces of at most ``size`` bytes (none for empty data)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def new_run_id(now: float) -> str:
    """A fresh run ID: creation second (hex) and 32 random bits, 16 characters."""
    return f"{int(now) & 0xFFFFFFFF:08x}{secrets.token_hex(4)}"


def run_created_at(run_id: str) -> Optional[float]:
    """The creation second encoded in a run ID (None if it is not one of ours)."""
    try:
        return float(int(run_id[:8], 16))
    except ValueError:
        return None


def chunk_prefix(run_id: str) -> str:
    """Sort-key prefix shared by a run's chunk items."""
    return f"{CHUNK_SK_PREFIX}{run_id}:"


def chunk_sk(run_id: str, seq: int) -> str:
    """Sort key of chunk ``seq`` of run ``run_id``."""
    return f"{CHUNK_SK_PREFIX}{run_id}:{seq:06d}"


def run_of_sk(sk: str) -> Optional[str]:
    """The run ID of a chunk sort key; None for the head or foreign items."""
    if not sk.startswith(CHUNK_SK_PREFIX) or ":" not in sk:
        return None
    return sk[len(CHUNK_SK_PREFIX) : sk.index(":")]


def _is_orphan(run_id: Optional[str], now: float) -> bool:
    """Whether a run no head lists can no longer be committed: old (or dated far ahead), or not one of ours."""
    if run_id is None or not _RUN_ID.fullmatch(run_id):
        return True
    created = run_created_at(run_id)
    return created is not None and abs(now - created) > ORPHAN_GRACE_SECONDS


def is_chunk_sk(sk: str) -> bool:
    """Whether ``sk`` names a chunk item this backend could have written."""
    run_id = run_of_sk(sk)
    return run_id is not None and _RUN_ID.fullmatch(run_id) is not None and _SEQ.fullmatch(sk[len(run_id) + 2 :]) is not None


def stale_chunks(chunk_sks: Iterable[str], head: Optional[HeadState], now: float) -> List[str]:
    """Chunk items no head references or registers whose run is old enough to be a crashed writer's.

    Runs the head registers (``pending``) are left to the next commit, which
    voids and deletes them; its own garbage too (see :class:`HeadState`).
    """
    kept = {run.run_id for run in head.all_runs() + list(head.pending)} if head is not None else set()
    return [sk for sk in chunk_sks if run_of_sk(sk) not in kept and _is_orphan(run_of_sk(sk), now)]


def run_keys(runs: Iterable[Run]) -> List[str]:
    """Sort keys of every chunk of ``runs``."""
    return [chunk_sk(run.run_id, seq) for run in runs for seq in range(run.chunks)]


def encode_runs(runs: Sequence[Run], open_last: bool) -> str:
    """``"<id>:<chunks>,<id>:<chunks>+"``; a trailing ``+`` marks the last run open for appends."""
    text = ",".join(f"{run.run_id}:{run.chunks}" for run in runs)
    return text + _OPEN_MARK if open_last and runs else text


def decode_runs(text: str) -> Tuple[Tuple[Run, ...], bool]:
    """Inverse of :func:`encode_runs`; raises ``ValueError`` on malformed input.

    Checked before anything follows the references: at most
    :data:`MAX_RUNS_LISTED` runs of our 16-hex-digit IDs, none twice, each
    of 1 to :data:`MAX_RUN_CHUNKS` chunks written as plain decimal digits.
    """
    if len(text) > MAX_RUNS_LISTED * 24:
        raise ValueError(f"run list of {len(text)} characters")
    open_last = text.endswith(_OPEN_MARK)
    if open_last:
        text = text[: -len(_OPEN_MARK)]
    runs = []
    for entry in text.split(",") if text else ():
        run_id, _, chunks = entry.partition(":")
        if not _RUN_ID.fullmatch(run_id) or not _CHUNKS.fullmatch(chunks) or not 1 <= int(chunks) <= MAX_RUN_CHUNKS:
            raise ValueError(f"bad run entry {entry[:40]!r}")
        runs.append(Run(run_id, int(chunks)))
    if len(runs) > MAX_RUNS_LISTED or len({run.run_id for run in runs}) != len(runs):
        raise ValueError("too many runs, or a run listed twice")
    return tuple(runs), open_last


def _typed(item: Item, name: str, kind: str) -> Any:
    """The value of attribute ``name`` of DynamoDB type ``kind``; KeyError if absent, TypeError if of another type."""
    typed = item[name]
    if not isinstance(typed, dict) or len(typed) != 1 or kind not in typed:
        raise TypeError(f"attribute {name!r} is not of type {kind}")
    return typed[kind]


def read_int(item: Item, name: str, low: int, high: int) -> int:
    """An ``N`` attribute holding a plain integer in ``[low, high]``."""
    text = _typed(item, name, "N")
    if not isinstance(text, str) or not _INTEGER.fullmatch(text):
        raise ValueError(f"attribute {name!r} is not an integer")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"attribute {name!r} is out of range")
    return value


def read_time(item: Item, name: str) -> float:
    """An ``N`` attribute holding epoch seconds a datetime can represent (years 1970 to 9999)."""
    text = _typed(item, name, "N")
    value = float(text) if isinstance(text, str) and len(text) <= 64 else math.nan
    if not 0.0 <= value < MAX_TIMESTAMP:
        raise ValueError(f"attribute {name!r} is not a timestamp")
    return value


def read_bytes(item: Item, name: str, max_size: int = MAX_ITEM_BYTES) -> bytes:
    value = _typed(item, name, "B")
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) > max_size:
        raise TypeError(f"attribute {name!r} is not binary")
    return bytes(value)


def read_str(item: Item, name: str, max_size: int = MAX_ITEM_BYTES) -> str:
    value = _typed(item, name, "S")
    if not isinstance(value, str) or len(value) > max_size:
        raise TypeError(f"attribute {name!r} is not a string")
    return value


def head_from_item(item: Item, thread_id: str) -> HeadState:
    """Read a head item (possibly projected to the attributes needed), checking every attribute it reads.

    Raises:
        CorruptSnapshotError: The item is not a head this backend wrote.
    """
    try:
        runs, open_last = decode_runs(read_str(item, A_RUNS)) if A_RUNS in item else ((), False)
        head_run = None
        if A_HEAD_RUN in item:
            spilled, open_head = decode_runs(read_str(item, A_HEAD_RUN))
            if len(spilled) != 1 or open_head or spilled[0].run_id in {run.run_id for run in runs}:
                raise ValueError("bad head run")
            head_run = spilled[0]
        count = read_int(item, A_COUNT, 0, MAX_MESSAGES) if A_COUNT in item else 0
        if count and A_RUNS in item and not runs:
            raise ValueError(f"{count} messages but no runs")
        digest = read_bytes(item, A_DIGEST) if A_DIGEST in item else EMPTY_DIGEST
        if len(digest) != len(EMPTY_DIGEST):
            raise ValueError("digest of the wrong size")
        token = read_str(item, A_TOKEN)
        if not 0 < len(token) <= 64:
            raise ValueError("bad write token")
        return HeadState(
            token=token,
            version=read_int(item, A_VERSION, 1, MAX_VERSION),
            message_count=count,
            digest=digest,
            updated_at=read_time(item, A_UPDATED) if A_UPDATED in item else 0.0,
            expires_at=read_time(item, A_EXPIRES) if A_EXPIRES in item else None,
            runs=runs,
            open_run=open_last,
            keep_until=read_int(item, A_KEEP, 0, int(MAX_TIMESTAMP)) if A_KEEP in item else None,
            head_run=head_run,
            inline_head=read_bytes(item, A_HEAD) if A_HEAD in item else None,
            generation=read_int(item, A_GENERATION, 0, MAX_COUNTER) if A_GENERATION in item else 0,
            applied=decode_applied(read_bytes(item, A_APPLIED), thread_id) if A_APPLIED in item else (),
            pending=_pending(item),
            garbage=decode_runs(read_str(item, A_GARBAGE))[0] if A_GARBAGE in item else (),
            positions=decode_index(read_str(item, A_INDEX), runs, count) if A_INDEX in item else (None if runs else ()),
        )
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise corrupt(thread_id, "the head item", exc) from None


def _pending(item: Item) -> Tuple[Run, ...]:
    """The runs registered in the head's string set ``pd`` (each ``"<run>:<chunks>"``)."""
    if A_PENDING not in item:
        return ()
    entries = _typed(item, A_PENDING, "SS")
    if not isinstance(entries, list) or len(entries) > MAX_RUNS_LISTED:
        raise ValueError("bad pending runs")
    return decode_runs(",".join(sorted(map(str, entries))))[0]


def pending_entry(run: Run) -> str:
    """The string-set entry that registers ``run`` in a head's ``pd``."""
    return f"{run.run_id}:{run.chunks}"


def corrupt(thread_id: str, part: str, exc: Optional[BaseException] = None) -> CorruptSnapshotError:
    """The error for a malformed ``part`` of ``thread_id``'s items."""
    detail = "" if exc is None else f" ({type(exc).__name__}: {str(exc)[:200]})"
    return CorruptSnapshotError(f"thread {thread_id!r}: {part} is malformed{detail}", thread_id=thread_id)


def head_item(thread_id: str, head: HeadState, *, ttl_attribute: str, shard: int) -> Item:
    """The head item that stores ``head`` (the inverse of :func:`head_from_item`), in listing shard ``shard``."""
    item: Item = {
        PK: {"S": thread_id},
        SK: {"S": HEAD_SK},
        A_VERSION: {"N": str(head.version)},
        A_COUNT: {"N": str(head.message_count)},
        A_DIGEST: {"B": head.digest},
        A_UPDATED: {"N": repr(head.updated_at)},
        A_TOKEN: {"S": head.token},
        A_SHARD: {"N": str(shard)},
    }
    if head.expires_at is not None:
        item[A_EXPIRES] = {"N": repr(head.expires_at)}
        item[ttl_attribute] = {"N": str(math.ceil(head.expires_at))}
    if head.runs:
        item[A_RUNS] = {"S": encode_runs(head.runs, head.open_run)}
    if head.keep_until is not None:
        item[A_KEEP] = {"N": str(head.keep_until)}
    if head.head_run is not None:
        item[A_HEAD_RUN] = {"S": encode_runs([head.head_run], False)}
    if head.inline_head is not None:
        item[A_HEAD] = {"B": head.inline_head}
    if head.generation:
        item[A_GENERATION] = {"N": str(head.generation)}
    if head.applied:
        item[A_APPLIED] = {"B": encode_applied(head.applied)}
    if head.garbage:
        item[A_GARBAGE] = {"S": encode_runs(head.garbage, False)}
    if head.positions and head.runs:
        item[A_INDEX] = {"S": encode_index(head.positions)}
    return item
