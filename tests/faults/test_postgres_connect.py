"""PostgreSQL: a new connection whose first query gets no answer fails within the deadline instead of hanging.

Found by the dropped-connections suite: after libpq connects, the pool asks
``SELECT pg_backend_pid()`` (to recognise a pooler) outside the deadline
watchdog; a connection black-holed at that moment blocked the call forever
(TCP keepalives never fire while the peer acknowledges).
"""

from __future__ import annotations

import threading
import time
from typing import Any, List

from agents_persist import from_url
from agents_persist.errors import BackendUnavailableError
from tests.faults.proxy import BLACKHOLE, Fault, FaultProxy, FaultSchedule
from tests.faults.test_dropped_connections import with_address

STATEMENT_TIMEOUT = 1.0
#: statement_timeout + 5 s is the documented deadline of a call; a little more for a loaded machine.
BOUND = STATEMENT_TIMEOUT + 5.0 + 2.0


def test_first_query_of_a_new_connection_black_holed(postgres_server: Any) -> None:
    from tests.fixtures.postgres import drop_schema, unique_schema

    schema = unique_schema("connect_")
    direct = from_url(postgres_server.url, schema=schema)
    proxy = FaultProxy((postgres_server.host, postgres_server.port), FaultSchedule(chunk_rate=0.0, connect_rate=0.0))
    cp = from_url(
        with_address(postgres_server.url, proxy.address),
        schema=schema,
        timeout=1.0,
        connect_timeout=2.0,
        statement_timeout=STATEMENT_TIMEOUT,
        min_connections=0,
    )
    outcome: List[BaseException] = []
    try:
        direct.exists("setup")  # the tables exist before the proxied checkpointer's first call
        proxy.schedule.force(Fault(BLACKHOLE), "up", match=b"pg_backend_pid")

        def load() -> None:
            try:
                cp.load("t")
            except BaseException as exc:  # noqa: BLE001
                outcome.append(exc)

        started = time.monotonic()
        caller = threading.Thread(target=load, daemon=True)
        caller.start()
        caller.join(BOUND + 10)
        took = time.monotonic() - started
        assert not caller.is_alive(), f"load still blocked after {took:.1f}s"
        assert proxy.counts[BLACKHOLE] == 1
        assert len(outcome) == 1 and isinstance(outcome[0], BackendUnavailableError), outcome
        assert outcome[0].maybe_applied is False
        assert took < BOUND, f"took {took:.1f}s"
        assert cp.load("t") is None  # and the next call works (a new connection)
    finally:
        proxy.close()  # unblocks a hung call
        cp.close()
        direct.close()
        drop_schema(postgres_server.url, schema)
