"""Item layout of :class:`~agents_persist.backends.dynamodb.DynamoDbCheckpointer`.

Pure functions and records, no I/O and no boto3: item sizes counted the way
AWS counts them, the length-prefixed message stream that chunk items carry,
run lists, and the conversion between a thread's head item and
:class:`HeadState`.

One table, partition key ``thread_id`` (S), sort key ``sk`` (S):

* the **head** (``sk = "H"``): version ``v``, message count ``n``, digest
  ``d``, the encoded head ``h`` (or ``hr``, a run holding it when it is too
  big to sit inline), ``u`` updated_at and ``x`` expires_at (exact floats),
  a write token ``w`` that changes on every save (the compare-and-set
  target), the log's runs ``r``, ``k`` the earliest TTL of the log's chunk
  items, ``ls`` the listing shard, and the TTL attribute;
* **chunk** items (``sk = "c<run>:<seq>"``): ``p``, a slice of a run's
  message stream, plus the TTL attribute.

A *run* is a sequence of chunk items written together under a fresh random
ID; the log is the concatenation of the runs the head lists, in order. A
chunk item is written once and never changed, and a run's chunks are
deleted only after a committed head stopped listing it, so a reader that
finds every chunk its head lists has one committed version whole.
"""

from __future__ import annotations

import secrets
import struct
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ..codec import EMPTY_DIGEST
from ..errors import CorruptSnapshotError

__all__ = [
    "MAX_ITEM_BYTES",
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

_LENGTH = struct.Struct(">I")
_OPEN_MARK = "+"

#: A DynamoDB item in the low-level client's typed form: ``{"name": {"S": "..."}}``.
Item = Dict[str, Dict[str, Any]]


class Run(NamedTuple):
    """A run of chunk items ``c<run_id>:000000`` .. ``c<run_id>:<chunks - 1>``."""

    run_id: str
    chunks: int


class HeadState(NamedTuple):
    """What a head item says (``inline_head`` dropped when cached)."""

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

    def all_runs(self) -> List[Run]:
        """Every run this head references: the log's and the spilled head's."""
        return list(self.runs) + ([self.head_run] if self.head_run is not None else [])


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


def run_keys(runs: Iterable[Run]) -> List[str]:
    """Sort keys of every chunk of ``runs``."""
    return [chunk_sk(run.run_id, seq) for run in runs for seq in range(run.chunks)]


def encode_runs(runs: Sequence[Run], open_last: bool) -> str:
    """``"<id>:<chunks>,<id>:<chunks>+"``; a trailing ``+`` marks the last run open for appends."""
    text = ",".join(f"{run.run_id}:{run.chunks}" for run in runs)
    return text + _OPEN_MARK if open_last and runs else text


def decode_runs(text: str) -> Tuple[Tuple[Run, ...], bool]:
    """Inverse of :func:`encode_runs`; raises ``ValueError`` on malformed input."""
    open_last = text.endswith(_OPEN_MARK)
    if open_last:
        text = text[: -len(_OPEN_MARK)]
    runs = []
    for entry in filter(None, text.split(",")):
        run_id, _, chunks = entry.partition(":")
        if not run_id or int(chunks) < 1:
            raise ValueError(f"bad run entry {entry!r}")
        runs.append(Run(run_id, int(chunks)))
    return tuple(runs), open_last


def head_from_item(item: Item, thread_id: str) -> HeadState:
    """Read a head item (possibly projected to the attributes needed).

    Raises:
        CorruptSnapshotError: The item is not a head this backend wrote.
    """
    try:
        runs, open_last = decode_runs(item[A_RUNS]["S"]) if A_RUNS in item else ((), False)
        head_run = None
        if A_HEAD_RUN in item:
            (head_run,), _ = decode_runs(item[A_HEAD_RUN]["S"])
        return HeadState(
            token=item[A_TOKEN]["S"],
            version=int(item[A_VERSION]["N"]),
            message_count=int(item[A_COUNT]["N"]) if A_COUNT in item else 0,
            digest=bytes(item[A_DIGEST]["B"]) if A_DIGEST in item else EMPTY_DIGEST,
            updated_at=float(item[A_UPDATED]["N"]) if A_UPDATED in item else 0.0,
            expires_at=float(item[A_EXPIRES]["N"]) if A_EXPIRES in item else None,
            runs=runs,
            open_run=open_last,
            keep_until=int(item[A_KEEP]["N"]) if A_KEEP in item else None,
            head_run=head_run,
            inline_head=bytes(item[A_HEAD]["B"]) if A_HEAD in item else None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptSnapshotError(
            f"thread {thread_id!r}: the head item is malformed ({type(exc).__name__}: {exc})", thread_id=thread_id
        ) from None
