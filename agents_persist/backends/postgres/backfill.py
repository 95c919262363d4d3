"""Migration 4: fill in the SQL mirror of threads stored before migration 3, in short batches.

Each batch is one transaction: lock the next ``BATCH_THREADS`` heads (in
thread-ID order) that have an unmirrored head or log row, read their
encoded bytes, write the mirror (:mod:`.mirror`), commit. Saves of those
threads wait for at most one batch; a process killed midway loses at most
the batch it was in, and the next walk skips what is already mirrored. A
head or log row that cannot be decoded keeps a NULL mirror (logged) and the
walk moves on.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional

from . import mirror

__all__ = ["BATCH_THREADS", "run"]

logger = logging.getLogger(__name__)

#: Threads mirrored per transaction.
BATCH_THREADS = 200


def _in_transaction(cursor: Any, work: Callable[..., Any], *args: Any) -> Any:
    cursor.execute("BEGIN")
    try:
        result = work(*args)
        cursor.execute("COMMIT")
    except BaseException:
        if not cursor.connection.closed:
            cursor.execute("ROLLBACK")
        raise
    return result


def _batch(cursor: Any, queries: Dict[str, str], after: str, limit: int) -> Optional[str]:
    """Mirror one batch after thread ID ``after``; return the last thread ID it covered (None: the walk is over)."""
    cursor.execute(queries["batch"], {"after": after, "limit": limit})
    found = cursor.fetchall()
    if not found:
        return None
    ids = [thread_id for thread_id, _ in found]
    heads: Dict[str, List[Any]] = {"ids": [], "todos": [], "interrupts": [], "metadata": []}
    cursor.execute(queries["heads"], {"ids": ids})
    for thread_id, head in cursor.fetchall():
        todos, interrupt, metadata = mirror.head_docs(bytes(head), thread_id)
        if metadata is None:
            logger.warning("agents_persist backfill: thread %r keeps no SQL mirror of its head (cannot decode it)", thread_id)
            continue
        for key, value in zip(heads, (thread_id, todos, interrupt, metadata)):
            heads[key].append(value)
    rows: Dict[str, List[Any]] = {"ids": [], "seqs": [], "docs": []}
    cursor.execute(queries["rows"], {"ids": ids})
    for thread_id, seq, count, data in cursor.fetchall():
        (doc,) = mirror.message_docs([bytes(data)], [count])
        if doc is None:
            logger.warning("agents_persist backfill: log row %d of thread %r keeps no SQL mirror (cannot decode)", seq, thread_id)
            continue
        for key, value in zip(rows, (thread_id, seq, doc)):
            rows[key].append(value)
    if heads["ids"]:
        cursor.execute(queries["set_heads"], heads)
    if rows["ids"]:
        cursor.execute(queries["set_rows"], rows)
    return str(ids[-1])


def run(cursor: Any, queries: Dict[str, str], *, batch_threads: Optional[int] = None) -> int:
    """Walk every thread once, mirroring what is not mirrored yet; return how many batches ran."""
    limit = BATCH_THREADS if batch_threads is None else batch_threads
    after: Optional[str] = ""
    batches = 0
    while after is not None:
        after = _in_transaction(cursor, _batch, cursor, queries, after, limit)
        batches += after is not None
    return batches
