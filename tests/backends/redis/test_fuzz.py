"""Hypothesis fuzz of a thread's stored Redis keys: random and flipped bytes, truncations, wrong values in every head
field, fields missing, log entries extra, missing or damaged, keys of the wrong type, extreme index scores, deep
nesting. Every read path must give the snapshot or CorruptSnapshotError, never another exception or a hang, and a
forced save and a delete must repair; the outcome classes of the loads are counted and printed in one line."""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Counter, List

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_persist import RedisCheckpointer
from tests.contract import corruption as shared

EXAMPLES = 150
#: Seconds the whole fuzz may take; hypothesis stops drawing cases after this.
BUDGET = 25.0
FIELDS = ("v", "n", "d", "h", "u", "e", "g", "a", "t", "k")
Damage = Callable[["redis.Redis", str, str, List[str]], Any]

values = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"0", b"-1", b"nan", b"inf", b"-inf", b"1e300", b"9" * 40, b"12", b"13", b"4:5:key-1", b"x:y;"]),
)


def _wrong_type(kind: str) -> Damage:
    def run(raw: "redis.Redis", head: str, log: str, indexes: List[str]) -> None:
        key = head if kind.startswith("head") else log
        raw.delete(key)
        {
            "string": lambda: raw.set(key, b"garbage"),
            "hash": lambda: raw.hset(key, "v", b"1"),
            "list": lambda: raw.rpush(key, b"x"),
            "set": lambda: raw.sadd(key, b"x"),
            "zset": lambda: raw.zadd(key, {b"x": 1}),
        }[kind.split()[1]]()

    return run


@st.composite
def mutation(draw: st.DrawFn) -> Damage:
    kind = draw(
        st.sampled_from(["field", "field", "drop field", "bytes", "log entry", "log shape", "wrong type", "index", "deep"])
    )
    if kind == "field":
        field, value = draw(st.sampled_from(FIELDS)), draw(values)
        return lambda raw, head, log, _: raw.hset(head, field, value)
    if kind == "drop field":
        field = draw(st.sampled_from(FIELDS))
        return lambda raw, head, log, _: raw.hdel(head, field)
    if kind == "bytes":
        field, how = draw(st.sampled_from(["h", "d", "a"])), draw(st.sampled_from(["flip", "truncate", "append"]))
        at, patch = draw(st.integers(0, 200)), draw(st.binary(min_size=1, max_size=4))

        def edit(raw: "redis.Redis", head: str, log: str, _: Any) -> None:
            old = raw.hget(head, field) or b""
            new = {"flip": old[:at] + patch + old[at + len(patch) :], "truncate": old[:at], "append": old + patch}[how]
            raw.hset(head, field, new)

        return edit
    if kind == "log entry":
        index, how = draw(st.integers(-4, 4)), draw(st.sampled_from(["flip", "truncate", "append", "replace"]))
        at, patch = draw(st.integers(0, 60)), draw(st.binary(min_size=1, max_size=8))

        def entry(raw: "redis.Redis", head: str, log: str, _: Any) -> None:
            old = raw.lindex(log, index)
            if old is None:
                return
            new = {
                "flip": old[:at] + patch + old[at + len(patch) :],
                "truncate": old[:at],
                "append": old + patch,
                "replace": patch,
            }
            raw.lset(log, index, new[how])

        return entry
    if kind == "log shape":
        how, blob = draw(st.sampled_from(["rpush", "lpush", "rpop", "lpop", "del"])), draw(st.binary(max_size=12))
        return lambda raw, head, log, _: {
            "rpush": lambda: raw.rpush(log, blob),
            "lpush": lambda: raw.lpush(log, blob),
            "rpop": lambda: raw.rpop(log),
            "lpop": lambda: raw.lpop(log),
            "del": lambda: raw.delete(log),
        }[how]()
    if kind == "wrong type":
        return _wrong_type(
            draw(st.sampled_from([f"{k} {t}" for k in ("head", "log") for t in ("string", "hash", "list", "set", "zset")]))
        )
    if kind == "index":
        which, score = draw(st.integers(0, 2)), draw(st.sampled_from([float("inf"), float("-inf"), 1e300, -1.0, 0.0]))
        return lambda raw, head, log, indexes: raw.zadd(indexes[which], {head.split("{")[1].split("}")[0]: score})
    depth = draw(st.sampled_from([70, 1000, 100_000]))
    deep = b"\x01\x81\xa8metadata\x81\xa1a" + b"\x91" * depth + b"\xc0"
    if draw(st.booleans()):
        return lambda raw, head, log, _: raw.hset(head, "h", deep)
    return lambda raw, head, log, _: raw.lset(log, 0, deep)


class Backup:
    """The victim's keys (DUMP) and index entries, to put back before each case."""

    def __init__(self, raw: "redis.Redis", keys: List[str], indexes: List[str], victim: str) -> None:
        self.raw, self.keys, self.indexes, self.victim = raw, keys, indexes, victim
        self.dumps = [raw.dump(key) for key in keys]
        self.scores = [raw.zscore(index, victim) for index in indexes]

    def restore(self) -> None:
        for key, dump in zip(self.keys, self.dumps):
            self.raw.delete(key)
            if dump is not None:
                self.raw.restore(key, 0, dump, replace=True)
        for index, score in zip(self.indexes, self.scores):
            self.raw.zrem(index, self.victim)
            if score is not None:
                self.raw.zadd(index, {self.victim: score})


def test_mutated_keys_give_the_snapshot_or_corrupt_snapshot_error(
    cp: RedisCheckpointer, raw: "redis.Redis", prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    names = shared.Names(prefix)
    original = shared.build(cp, names)
    head, log = cp.store._keys(names.victim)
    indexes = list(cp.store.index.keys)
    backup = Backup(raw, [head, log], indexes, names.victim)
    outcomes: Counter[str] = collections.Counter()
    deadline = time.monotonic() + BUDGET

    def damage(mutations: List[Damage]) -> bool:
        try:
            for m in mutations:
                m(raw, head, log, indexes)
        except redis.ResponseError:
            return False  # the server refused (wrong type for the command, index out of range)
        return True

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(mutation(), min_size=1, max_size=3))
    def run(mutations: List[Damage]) -> None:
        if time.monotonic() > deadline:
            outcomes["not run (time budget)"] += 1
            return
        backup.restore()
        if not damage(mutations):
            outcomes["refused by the server (types)"] += 1
            return
        outcomes[shared.exercise(cp, original, names)] += 1
        backup.restore()
        damage(mutations)
        shared.exercise_delete(cp, names, lambda: int(raw.exists(head, log)))

    run()
    with capsys.disabled():
        print(f"\nRedis mutated-keys fuzz, {sum(outcomes.values())} cases: {dict(outcomes.most_common())}")
    assert outcomes["corrupt"] > 0 and outcomes["loaded correctly"] > 0
