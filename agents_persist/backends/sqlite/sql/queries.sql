-- The statements the SQLite store runs, one per "-- name: <name>" section; comment lines are not sent.
-- ?N and :name are sqlite3 parameters. Each is a fixed string, so sqlite3's statement
-- cache prepares it once per connection.

-- name: load
-- One statement is one consistent read (WAL snapshot) without BEGIN/COMMIT: the head
-- row (part 0), then the log rows (part 1). No ORDER BY: sorting would copy every blob
-- through a temporary b-tree (5x slower); SQLite runs the two parts in turn, the second
-- in primary-key order, and the reader checks that order (and sorts if it ever differs).
SELECT 0 AS part, NULL AS seq, version, message_count, digest, updated_at, expires_at, generation, applied, head
    FROM agents_persist_threads WHERE thread_id = ?1
UNION ALL
SELECT 1, seq, n, data, NULL, NULL, NULL, NULL, NULL, NULL
    FROM agents_persist_messages WHERE thread_id = ?1

-- name: load_range
-- As load, but only the log rows holding positions lo .. hi - 1, where ?2 and ?3 are Python
-- slice bounds (NULL: none; negative: from the end) resolved against the head's count in
-- this same statement (one snapshot). The rows start at the one holding lo (an index seek).
WITH h AS (SELECT message_count AS c FROM agents_persist_threads WHERE thread_id = ?1),
b AS (
    SELECT CASE WHEN ?2 IS NULL THEN 0 WHEN ?2 < 0 THEN max(c + ?2, 0) ELSE min(?2, c) END AS lo,
           CASE WHEN ?3 IS NULL THEN c WHEN ?3 < 0 THEN max(c + ?3, 0) ELSE min(?3, c) END AS hi
    FROM h
)
SELECT 0 AS part, NULL AS seq, version, message_count, digest, updated_at, expires_at, generation, applied, NULL
    FROM agents_persist_threads WHERE thread_id = ?1
UNION ALL
SELECT 1, seq, n, data, NULL, NULL, NULL, NULL, NULL, NULL
    FROM agents_persist_messages, b
    WHERE thread_id = ?1 AND b.lo < b.hi AND seq < b.hi
      AND seq >= coalesce((SELECT max(seq) FROM agents_persist_messages WHERE thread_id = ?1 AND seq <= b.lo), 0)

-- name: head
SELECT version, message_count, digest, updated_at, expires_at, generation, applied
    FROM agents_persist_threads WHERE thread_id = ?

-- name: version
SELECT version, expires_at FROM agents_persist_threads WHERE thread_id = ?

-- name: write_head
SELECT version, message_count, digest, updated_at, expires_at, generation, applied, tail_seq, tail_rows
    FROM agents_persist_threads WHERE thread_id = ?

-- name: tail
SELECT seq, n, data FROM agents_persist_messages WHERE thread_id = ? AND seq >= ? ORDER BY seq LIMIT ?

-- name: delete_log
DELETE FROM agents_persist_messages WHERE thread_id = ?

-- name: delete_log_from
DELETE FROM agents_persist_messages WHERE thread_id = ? AND seq >= ?

-- name: insert_row
INSERT INTO agents_persist_messages (thread_id, seq, n, data) VALUES (?, ?, ?, ?)

-- name: put_head
INSERT INTO agents_persist_threads
    (thread_id, version, message_count, digest, head, updated_at, expires_at, generation, applied, tail_seq, tail_rows)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (thread_id) DO UPDATE SET
        version = excluded.version, message_count = excluded.message_count, digest = excluded.digest,
        head = excluded.head, updated_at = excluded.updated_at, expires_at = excluded.expires_at,
        generation = excluded.generation, applied = excluded.applied,
        tail_seq = excluded.tail_seq, tail_rows = excluded.tail_rows

-- name: put_head_keeping_blob
-- As put_head, but an existing thread keeps its stored head blob (append).
INSERT INTO agents_persist_threads
    (thread_id, version, message_count, digest, head, updated_at, expires_at, generation, applied, tail_seq, tail_rows)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (thread_id) DO UPDATE SET
        version = excluded.version, message_count = excluded.message_count, digest = excluded.digest,
        updated_at = excluded.updated_at, expires_at = excluded.expires_at,
        generation = excluded.generation, applied = excluded.applied,
        tail_seq = excluded.tail_seq, tail_rows = excluded.tail_rows

-- name: exists
SELECT expires_at FROM agents_persist_threads WHERE thread_id = ?

-- name: delete_head
DELETE FROM agents_persist_threads WHERE thread_id = ?

-- name: purge_logs
DELETE FROM agents_persist_messages WHERE thread_id IN
    (SELECT thread_id FROM agents_persist_threads WHERE expires_at IS NOT NULL AND expires_at <= ?)

-- name: purge_heads
DELETE FROM agents_persist_threads WHERE expires_at IS NOT NULL AND expires_at <= ?

-- name: list
-- Newest first. Rows whose thread_id is not TEXT cannot be any thread ID and are never listed.
SELECT thread_id, version, updated_at, message_count, expires_at FROM agents_persist_threads
    WHERE typeof(thread_id) = 'text' AND (expires_at IS NULL OR expires_at > :now)
      AND (:prefix IS NULL OR substr(thread_id, 1, length(:prefix)) = :prefix)
    ORDER BY updated_at DESC, thread_id DESC LIMIT :limit

-- name: list_after
SELECT thread_id, version, updated_at, message_count, expires_at FROM agents_persist_threads
    WHERE typeof(thread_id) = 'text' AND (expires_at IS NULL OR expires_at > :now)
      AND (:prefix IS NULL OR substr(thread_id, 1, length(:prefix)) = :prefix)
      AND (updated_at < :after_at OR (updated_at = :after_at AND thread_id < :after_id))
    ORDER BY updated_at DESC, thread_id DESC LIMIT :limit

-- name: scan
-- Thread-ID order.
SELECT thread_id, version, updated_at, message_count, expires_at FROM agents_persist_threads
    WHERE typeof(thread_id) = 'text' AND (expires_at IS NULL OR expires_at > :now)
      AND (:prefix IS NULL OR substr(thread_id, 1, length(:prefix)) = :prefix)
    ORDER BY thread_id LIMIT :limit

-- name: scan_after
SELECT thread_id, version, updated_at, message_count, expires_at FROM agents_persist_threads
    WHERE typeof(thread_id) = 'text' AND (expires_at IS NULL OR expires_at > :now)
      AND (:prefix IS NULL OR substr(thread_id, 1, length(:prefix)) = :prefix)
      AND thread_id > :after
    ORDER BY thread_id LIMIT :limit
