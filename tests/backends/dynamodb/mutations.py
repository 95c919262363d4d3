"""Mutated stored items of DynamoDB threads: hypothesis strategies, writing them raw, and running every read path.

A *case* copies the items of a well-formed base thread under a fresh thread
ID, changes them (flipped, random or truncated bytes, wrong attribute types,
extreme numbers, bad run references, missing and extra items, deeply nested
msgpack) with a plain boto3 client, and then runs ``load``, ``exists``,
``get_version``, ``list_threads``, ``iter_threads``, ``purge_expired``, a
forced save and ``delete`` on it. :func:`run_case` classifies each call's
outcome; each call must end within :data:`CALL_SECONDS`.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from contextlib import contextmanager
from types import FrameType
from typing import Any, Dict, Iterator, List, Optional, Tuple

from hypothesis import strategies as st

from agents_persist import AgentMessage, AgentStateSnapshot, CorruptSnapshotError

Item = Dict[str, Dict[str, Any]]

#: A read path that takes longer than this on a few items hangs.
CALL_SECONDS = 10.0

#: Every attribute the layout writes (head and chunk items), plus the TTL attribute.
ATTRIBUTES = ["v", "n", "d", "h", "hr", "u", "x", "w", "r", "k", "ls", "g", "a", "p", "ttl", "sk"]

EXTREME_NUMBERS = [
    "0",
    "-1",
    "1",
    "1.5",
    "-0.000001",
    "99999999",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "1E-130",
    "1e20",
    "253402300800",
    "-62135596801",
]

EXTREME_STRINGS = [
    "",
    "zz:99999999",
    "zz:99999999+",
    "0000000000000000:99999999",
    "a:1,a:1,a:1,a:1",
    "x",
    ":",
    ",,,",
    "+",
    "0000000000000000:-1",
    "0000000000000000:0",
    "0000000000000000:1e9",
    "H",
    "c",
    "\u0000",
    "é" * 50,
]


def deep_msgpack(depth: int) -> bytes:
    """A format byte and ``depth`` nested one-element msgpack arrays (``[[[...]]]``)."""
    return b"\x01" + b"\x91" * depth + b"\xc0"


def deep_map(depth: int) -> bytes:
    """A format byte and ``depth`` nested one-entry maps ``{"a": {"a": ...}}``."""
    return b"\x01" + b"\x81\xa1a" * depth + b"\xc0"


def deep_message(depth: int) -> bytes:
    """A stored message (format byte + msgpack) whose content nests ``depth`` lists deep."""
    import msgspec

    return b"\x01" + msgspec.msgpack.encode({"role": "user", "content": None})[:-1] + b"\x91" * depth + b"\xc0"


def deep_head(depth: int) -> bytes:
    """A stored head (format byte + msgpack) whose metadata nests ``depth`` lists deep."""
    import msgspec

    return b"\x01" + msgspec.msgpack.encode({"metadata": {"deep": None}})[:-1] + b"\x91" * depth + b"\xc0"


# ---------------------------------------------------------------- strategies


@st.composite
def byte_mutation(draw: Any, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "random", "truncate", "extend", "empty", "deep", "deep_map", "splice"]))
    if kind == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        bit = draw(st.integers(0, 7))
        return data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
    if kind == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "extend":
        return data + draw(st.binary(min_size=1, max_size=16))
    if kind == "empty":
        return b""
    if kind == "deep":
        make = draw(st.sampled_from([deep_msgpack, deep_head, deep_message]))
        return make(draw(st.sampled_from([200, 5_000, 100_000])))  # type: ignore[no-any-return]
    if kind == "deep_map":
        return deep_map(draw(st.sampled_from([200, 5_000, 100_000])))
    if kind == "splice" and data:
        i = draw(st.integers(0, len(data)))
        header = draw(st.sampled_from([b"\xdd\xff\xff\xff\xff", b"\xdf\x7f\xff\xff\xff", b"\xc6\x7f\xff\xff\xff"]))
        return data[:i] + header + data[i:]
    return draw(st.binary(min_size=1, max_size=64))


def typed_values() -> st.SearchStrategy[Dict[str, Any]]:
    """Values of every DynamoDB type, extreme ones included."""
    return st.one_of(
        st.sampled_from(EXTREME_NUMBERS).map(lambda n: {"N": n}),
        st.sampled_from(EXTREME_STRINGS).map(lambda s: {"S": s} if s else {"S": " "}),
        st.binary(min_size=0, max_size=40).map(lambda b: {"B": b}),
        st.just({"B": deep_msgpack(100_000)}),
        st.just({"BOOL": True}),
        st.just({"NULL": True}),
        st.just({"L": [{"S": "x"}]}),
        st.just({"M": {"N": {"N": "1"}}}),
        st.just({"SS": ["a", "b"]}),
        st.just({"NS": ["1", "2"]}),
        st.just({"BS": [b"a"]}),
    )


@st.composite
def value_mutation(draw: Any, typed: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A new value for one attribute (None: remove it)."""
    ((kind, value),) = typed.items()
    choice = draw(st.sampled_from(["same_type", "other", "remove"]))
    if choice == "remove":
        return None
    if choice == "other":
        return draw(typed_values())  # type: ignore[no-any-return]
    if kind == "B":
        return {"B": draw(byte_mutation(bytes(value)))}
    if kind == "N":
        return {"N": draw(st.sampled_from(EXTREME_NUMBERS))}
    if kind == "S":
        options = EXTREME_STRINGS + [value[:-1] or " ", value + "0", value.replace("1", "9"), value * 3]
        if ":" in value:  # a run list: bigger counts, duplicated entries, a foreign run
            run_id, _, rest = value.partition(":")
            options += [f"{run_id}:99999999", f"{value},{value}", f"{value},{run_id[::-1]}:1", run_id, f"{run_id}:2"]
        text = draw(st.sampled_from(options))
        return {"S": text or " "}
    return draw(typed_values())  # type: ignore[no-any-return]


@st.composite
def mutations(draw: Any, items: List[Item]) -> Tuple[str, List[Item]]:
    """A description and the mutated copy of ``items`` (head first)."""
    items = [dict(item) for item in items]
    kind = draw(st.sampled_from(["attribute", "attribute", "attribute", "attribute", "drop_item", "extra_item", "several"]))
    rounds = draw(st.integers(2, 4)) if kind == "several" else 1
    described = []
    for _ in range(rounds):
        what = kind if kind != "several" else draw(st.sampled_from(["attribute", "drop_item", "extra_item"]))
        if what == "drop_item" and len(items) > 0:
            index = draw(st.integers(0, len(items) - 1))
            described.append(f"drop {items[index]['sk']['S']}")
            del items[index]
        elif what == "extra_item":
            sk = draw(
                st.one_of(
                    st.sampled_from(["H", "c", "cx", "c:", "c00000000zzzzzzzz:000000", "Z", "a", "c" + "f" * 16 + ":999999"]),
                    st.sampled_from([item["sk"]["S"][:-1] + "9" for item in items if item["sk"]["S"] != "H"] or ["cq:0"]),
                )
            )
            extra: Item = {"sk": {"S": sk}}
            for name in draw(st.lists(st.sampled_from(ATTRIBUTES[:-1]), max_size=4, unique=True)):
                if name != "sk":
                    extra[name] = draw(typed_values())
            items = [item for item in items if item["sk"]["S"] != sk] + [extra]
            described.append(f"extra {sk} {sorted(extra)}")
        elif items:
            index = draw(st.integers(0, len(items) - 1))
            item = items[index]
            name = draw(st.sampled_from(sorted(set(item) - {"thread_id"}) + ATTRIBUTES))
            if name == "sk":
                new_sk = draw(st.sampled_from(["H", "c", item["sk"]["S"] + "x", "Hx", "cx:000000"]))
                items[index] = {**item, "sk": {"S": new_sk}}
                items = [other for i, other in enumerate(items) if i == index or other["sk"]["S"] != new_sk]
                described.append(f"{item['sk']['S']}.sk={new_sk}")
                continue
            new = draw(value_mutation(item[name])) if name in item else draw(typed_values())
            if new is None:
                item.pop(name, None)
            else:
                item[name] = new
            described.append(f"{item['sk']['S']}.{name}={_short(new)}")
    return "; ".join(described), items


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


# ---------------------------------------------------------------- raw items


def read_items(client: Any, table: str, thread_id: str) -> List[Item]:
    request: Dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "thread_id = :t",
        "ExpressionAttributeValues": {":t": {"S": thread_id}},
        "ConsistentRead": True,
    }
    items: List[Item] = []
    while True:
        page = client.query(**request)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=lambda item: item["sk"]["S"] != "H")


#: The listing index's key attributes: AWS refuses an item where they are not numbers (moto stores it and then
#: fails every query of the index with a 500), so such items cannot exist in a real table.
INDEX_KEYS = ("ls", "u")


def write_items(client: Any, table: str, thread_id: str, items: List[Item]) -> int:
    """Put ``items`` under ``thread_id`` one by one; returns how many were refused (as AWS would, or the server)."""
    from botocore.exceptions import ClientError

    refused = 0
    for item in items:
        if any(name in item and set(item[name]) != {"N"} for name in INDEX_KEYS):
            refused += 1
            continue
        try:
            client.put_item(TableName=table, Item={**item, "thread_id": {"S": thread_id}})
        except ClientError:
            refused += 1
    return refused


# ---------------------------------------------------------------- running the read paths


class Hang(Exception):
    """A call ran past :data:`CALL_SECONDS`."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: Optional[FrameType]) -> None:
        raise Hang(f"over {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _classify(exc: BaseException, thread_id: str) -> str:
    if isinstance(exc, Hang):
        return "hang"
    if isinstance(exc, CorruptSnapshotError):
        return "corrupt" if exc.thread_id == thread_id and thread_id in str(exc) else "corrupt-unnamed"
    if isinstance(exc, RecursionError):
        return "RecursionError"
    return f"other:{type(exc).__name__}"


def run_case(cp: Any, thread_id: str, prefix: str, expected: AgentStateSnapshot) -> Dict[str, str]:
    """Every read path, the forced save and the delete on the mutated thread: ``{operation: outcome}``.

    Outcomes: ``same`` (loaded the base snapshot), ``changed`` (loaded another
    valid snapshot), ``none`` (no thread), ``ok`` (a call without a result to
    compare), ``listed``/``flagged``/``absent`` for listings, ``corrupt``
    (CorruptSnapshotError naming the thread), ``hang``, ``RecursionError``,
    ``other:<type>``.
    """
    outcomes: Dict[str, str] = {}

    def attempt(name: str, call: Any) -> Any:
        started = time.monotonic()
        try:
            with time_limit(CALL_SECONDS):
                result = call()
        except BaseException as exc:  # noqa: BLE001 - every outcome is classified
            outcomes[name] = _classify(exc, thread_id)
            if outcomes[name].startswith("other") or outcomes[name] in ("hang", "corrupt-unnamed"):
                outcomes[name] += f" ({type(exc).__name__}: {str(exc)[:200]}) after {time.monotonic() - started:.1f}s"
            return None
        outcomes[name] = "ok"
        return result

    state = attempt("load", lambda: cp.load(thread_id))
    if outcomes["load"] == "ok":
        if state is None:
            outcomes["load"] = "none"
        elif state.messages == expected.messages and state.metadata == expected.metadata and state.todos == expected.todos:
            outcomes["load"] = "same"
        else:
            outcomes["load"] = "changed"
    attempt("exists", lambda: cp.exists(thread_id))
    attempt("get_version", lambda: cp.get_version(thread_id))
    page = attempt("list_threads", lambda: cp.list_threads(prefix, limit=10))
    if page is not None:
        outcomes["list_threads"] = _listed([info for info in page.threads], thread_id)
    walked = attempt("iter_threads", lambda: list(cp.iter_threads(prefix, page_size=2)))
    if walked is not None:
        outcomes["iter_threads"] = _listed(walked, thread_id)
    attempt("purge_expired", cp.purge_expired)
    repaired = AgentStateSnapshot(messages=[AgentMessage.user("repaired")], metadata={"fixed": True})
    attempt("save_force", lambda: cp.save(thread_id, repaired, force=True))
    again = attempt("load_after_save", lambda: cp.load(thread_id))
    if outcomes["save_force"] == "ok" and outcomes["load_after_save"] == "ok":
        good = again is not None and again.messages == repaired.messages and again.metadata == {"fixed": True}
        outcomes["load_after_save"] = "same" if good else "wrong"
    attempt("delete", lambda: cp.delete(thread_id))
    return outcomes


def _listed(infos: List[Any], thread_id: str) -> str:
    mine = [info for info in infos if info.thread_id == thread_id]
    if not mine:
        return "absent"
    if len(mine) > 1:
        return "duplicated"
    return "flagged" if getattr(mine[0], "corrupt", False) else "listed"


def tally(outcomes: Dict[str, str], counts: "Counter[Tuple[str, str]]") -> None:
    for operation, outcome in outcomes.items():
        counts[(operation, outcome.split(" (")[0])] += 1
