"""The SQL mirror: what a save writes next to the encoded bytes so that plain SQL can read every thread.

The library loads only the encoded bytes (``bytea``, exact by construction);
the mirror is for the views ``<table>_threads`` and ``<table>_messages``
(``sql/0003_*.sql``): each log row's messages as one JSON array, the head's
todos, pending interrupt and metadata as JSON. It is built from the encoded
bytes themselves (one untyped msgpack decode and one JSON encode per log
row), so it says exactly what is stored.

PostgreSQL ``text`` and ``jsonb`` cannot hold U+0000: a NUL in a string is
mirrored as U+FFFD (the stored bytes, and so every load, keep it).
"""

from __future__ import annotations

import re
import struct
from typing import Any, List, Optional, Sequence, Tuple

import msgspec

from ... import codec
from ...errors import AgentsPersistError

__all__ = ["message_docs", "head_docs", "HeadDocs", "UNMIRRORED"]

#: (todos, current_interrupt or None, metadata) as JSON text.
HeadDocs = Tuple[Optional[str], Optional[str], Optional[str]]
#: The mirror of a head that cannot be decoded: not mirrored (metadata NULL).
UNMIRRORED: HeadDocs = (None, None, None)

_untyped = msgspec.msgpack.Decoder()
_json = msgspec.json.Encoder()
_ARRAY32 = struct.Struct(">BI")
#: A JSON ``\u0000`` escape not itself escaped (preceded by an even number of backslashes).
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _text(doc: bytes) -> str:
    if b"\\u0000" in doc:
        doc = _NUL_ESCAPE.sub(rb"\1\\ufffd", doc)
    return doc.decode("utf-8")


def message_docs(chunks: Sequence[bytes], counts: Sequence[int]) -> List[Optional[str]]:
    """The JSON array of the messages of each log row (``chunks[i]`` holds ``counts[i]`` encoded messages).

    A stored message is its format byte followed by a msgpack map, so a row's
    ``n`` messages are ``2n`` msgpack values: decoded at once as one array.
    A chunk that is not ``n`` encoded messages gets None (not mirrored): the
    mirror never stops a save, and never says something else than the bytes.
    """
    docs: List[Optional[str]] = []
    for chunk, count in zip(chunks, counts):
        try:
            values = _untyped.decode(_ARRAY32.pack(0xDD, 2 * count) + chunk)
            docs.append(_text(_json.encode(values[1::2])))
        except (msgspec.DecodeError, msgspec.EncodeError, UnicodeDecodeError, TypeError):
            docs.append(None)
    return docs


def _record(value: Any) -> Any:
    """A struct as a dict of every field (defaults included, unlike the encoded bytes)."""
    return msgspec.structs.asdict(value)


def head_docs(head: bytes, thread_id: Optional[str] = None) -> HeadDocs:
    """Todos, pending interrupt (None if there is none) and metadata of an encoded head, as JSON text;
    :data:`UNMIRRORED` if ``head`` is not an encoded head."""
    try:
        record = codec.decode_head(head, thread_id)
    except AgentsPersistError:
        return UNMIRRORED
    interrupt = record.current_interrupt
    return (
        _text(_json.encode([_record(todo) for todo in record.todos])),
        None if interrupt is None else _text(_json.encode(_record(interrupt))),
        _text(_json.encode(record.metadata)),
    )
