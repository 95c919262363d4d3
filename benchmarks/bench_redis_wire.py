"""Redis, close to the wire: the library's save, load and many-threads workload against raw redis-py, in one run.

Run: ``python -m benchmarks.bench_redis_wire [--repeats N]`` (starts a
throwaway ``redis-server``). Every pair is measured interleaved in one run
(medians; the machine is shared, so only same-run ratios mean anything):

- save of +2 messages onto 1,000 (a loaded snapshot) against a pipelined
  ``RPUSH`` of the two encoded messages and a ``SET`` of the encoded head,
  plus the server time per save script call (``INFO commandstats``);
- load of 1,150 messages against a raw ``GET`` of the whole snapshot encoded
  as one msgpack value and one typed msgspec decode;
- 2 worker threads x 200 thread IDs, each saving a new 50-message thread then
  loading it, against raw ``SET`` + ``GET`` + decode of the whole snapshot.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from typing import Any, Callable, Dict

import msgspec
import redis

from agents_persist import AgentStateSnapshot, RedisCheckpointer
from benchmarks.harness import interleave, make_messages, snapshot_of
from tests.servers import RedisServer

ENCODER = msgspec.msgpack.Encoder()
DECODER = msgspec.msgpack.Decoder(AgentStateSnapshot)


def script_usec(client: Any) -> float:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec_per_call", 0.0))


def save_pair(cp: RedisCheckpointer, client: Any, repeats: int) -> Dict[str, float]:
    state = snapshot_of(make_messages(1000))
    cp.save("wire-save", state)
    raw_key = "rawbench:{save}"
    client.rpush(raw_key + ":log", *[ENCODER.encode(m) for m in make_messages(1000)])
    count = [1000]

    def library() -> None:
        state.messages.extend(make_messages(2, count[0]))
        count[0] += 2
        cp.save("wire-save", state)

    head = ENCODER.encode(snapshot_of([]))

    def raw() -> None:
        two = [ENCODER.encode(m) for m in make_messages(2, count[0])]
        pipe = client.pipeline(transaction=False)
        pipe.rpush(raw_key + ":log", *two)
        pipe.set(raw_key + ":head", head)
        pipe.execute()

    client.config_resetstat()
    samples = interleave({"library": library, "raw": raw}, repeats)
    per_call = script_usec(client)
    cp.delete("wire-save")
    client.delete(raw_key + ":log", raw_key + ":head")
    lib, rw = statistics.median(samples["library"]), statistics.median(samples["raw"])
    return {"save lib us": lib * 1e6, "save raw us": rw * 1e6, "save ratio": lib / rw, "script us/call": per_call}


def load_pair(cp: RedisCheckpointer, client: Any, repeats: int) -> Dict[str, float]:
    msgs = make_messages(1150)
    state = snapshot_of(msgs[:1000])
    cp.save("wire-load", state)
    for i in range(1000, 1150, 2):  # a history built turn by turn
        state.messages.extend(msgs[i : i + 2])
        cp.save("wire-load", state)
    client.set("rawbench:{load}", ENCODER.encode(snapshot_of(msgs)))

    def library() -> None:
        loaded = cp.load("wire-load")
        assert loaded is not None and len(loaded.messages) == 1150

    def raw() -> None:
        snapshot = DECODER.decode(client.get("rawbench:{load}"))
        assert len(snapshot.messages) == 1150

    samples = interleave({"library": library, "raw": raw}, repeats)
    cp.delete("wire-load")
    client.delete("rawbench:{load}")
    lib, rw = statistics.median(samples["library"]), statistics.median(samples["raw"])
    return {"load lib us": lib * 1e6, "load raw us": rw * 1e6, "load ratio": lib / rw}


def many_threads(cp: RedisCheckpointer, client: Any, rounds: int) -> Dict[str, float]:
    msgs = make_messages(50)

    def run(work: Callable[[str], None]) -> float:
        def worker(w: int) -> None:
            for i in range(200):
                work(f"wire-many-{w}-{i}")

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(2)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return 400 / (time.perf_counter() - start)

    def library(tid: str) -> None:
        cp.save(tid, AgentStateSnapshot(messages=list(msgs)))
        assert cp.load(tid) is not None

    def raw(tid: str) -> None:
        client.set("rawbench:" + tid, ENCODER.encode(AgentStateSnapshot(messages=list(msgs))))
        DECODER.decode(client.get("rawbench:" + tid))

    lib_rates, raw_rates = [], []
    for _ in range(rounds):
        for tid in [f"wire-many-{w}-{i}" for w in range(2) for i in range(200)]:
            cp.delete(tid)
        lib_rates.append(run(library))
        raw_rates.append(run(raw))
    lib, rw = statistics.median(lib_rates), statistics.median(raw_rates)
    return {"many lib ops/s": lib, "many raw ops/s": rw, "many ratio": lib / rw}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer.start(tmp)
        try:
            cp = RedisCheckpointer.from_url(server.url, key_prefix="wirebench:")
            client = redis.Redis.from_url(server.url)
            results: Dict[str, float] = {}
            results.update(save_pair(cp, client, args.repeats))
            results.update(load_pair(cp, client, args.repeats))
            results.update(many_threads(cp, client, args.rounds))
            for key, value in results.items():
                print(f"{key:>16}: {value:10.2f}")
            cp.close()
            client.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
