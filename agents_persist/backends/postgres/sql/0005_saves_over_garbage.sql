-- Migration 5: saves and deletes over stored rows the library did not write.
-- The save function of migration 3 took whatever the head row held: a version
-- at the top of bigint made "version + 1" fail, arrays of another shape made
-- array_append fail, a negative tail_rows or log rows whose counts add up past
-- an integer made the merge fail, so not even a forced save could repair such
-- a thread. save4 checks the head row first, then runs save3 (same parameters
-- and results):
-- * a head outside what this library writes (version 1 .. 2**63 - 2, count
--   >= 0, a 16-byte digest, no NaN expiry, two one-dimensional arrays from 1
--   of equal length without NULLs, versions >= 1) fails a save that depends on
--   it (expected version, idempotency key, kept head) with SQLSTATE XX001
--   data_corrupted, writing nothing; a forced append gets o_status 2 (prefix
--   mismatch: the caller rewrites); a forced rewrite replaces it as if the
--   thread were not there (version 1, a new generation);
-- * an unreadable tail_rows, or log rows that are not one contiguous run from
--   position 0 to the head's count when a merge is due, are sealed (never
--   merged: load reports them) and a new tail starts.
-- delete2 runs the delete function, then removes log rows that have no head
-- row (no thread, but they stayed stored), in one statement: rows of a
-- concurrent save that created the head are either invisible to it (not
-- committed yet) or come with a head it sees, so no new incarnation loses rows.
-- Names in braces are identifiers filled in, quoted, by psycopg2.sql.Identifier;
-- the whole file runs as one script inside the migration transaction.

CREATE FUNCTION {save4_fn}(
    p_thread_id text, p_expected bigint, p_expected_generation bigint,
    p_append_from integer, p_base_digest bytea,
    p_seqs integer[], p_counts integer[], p_chunks bytea[], p_docs json[],
    p_message_count integer, p_digest bytea, p_head bytea,
    p_todos jsonb, p_interrupt jsonb, p_metadata jsonb,
    p_now double precision, p_expires_at double precision,
    p_new_generation bigint, p_keep_head boolean, p_key bytea, p_max_keys integer,
    p_merge_rows integer, p_chunk_bytes integer,
    OUT o_status integer, OUT o_version bigint, OUT o_generation bigint)
LANGUAGE plpgsql AS $body$
DECLARE
    cur record;
    sane boolean;
BEGIN
    SELECT t.version, t.message_count, t.digest, t.expires_at, t.tail_rows, t.generation,
           t.applied_keys AS keys, t.applied_versions AS versions
      INTO cur FROM {threads} AS t WHERE t.thread_id = p_thread_id FOR UPDATE;
    IF FOUND THEN
        sane := cur.version BETWEEN 1 AND 9223372036854775806 AND cur.message_count >= 0
                AND octet_length(cur.digest) = 16 AND cur.expires_at IS DISTINCT FROM 'NaN'::double precision
                AND coalesce(array_ndims(cur.keys), 1) = 1 AND coalesce(array_ndims(cur.versions), 1) = 1
                AND coalesce(array_lower(cur.keys, 1), 1) = 1 AND coalesce(array_lower(cur.versions, 1), 1) = 1
                AND cardinality(cur.keys) = cardinality(cur.versions);
        IF sane THEN  -- array_position needs one-dimensional arrays
            sane := array_position(cur.keys, NULL) IS NULL AND array_position(cur.versions, NULL) IS NULL
                    AND NOT 0 >= ANY (cur.versions);
        END IF;
        IF NOT sane THEN
            IF p_expected IS NOT NULL OR p_key IS NOT NULL OR p_keep_head THEN
                RAISE EXCEPTION 'the stored head row holds values this library never writes; save(..., force=True) or delete() replaces it'
                    USING ERRCODE = 'data_corrupted';
            END IF;
            IF p_append_from IS NOT NULL THEN
                o_status := 2; o_version := 0; o_generation := 0; RETURN;
            END IF;
            DELETE FROM {threads} AS t WHERE t.thread_id = p_thread_id;
            DELETE FROM {log} AS m WHERE m.thread_id = p_thread_id;
        ELSIF cur.tail_rows < 0 OR cur.tail_rows > cur.message_count OR (
                  p_append_from IS NOT NULL AND cur.tail_rows::bigint + cardinality(p_seqs) >= p_merge_rows
                  AND EXISTS (SELECT FROM (SELECT m.seq, m.n, lag(m.seq::bigint + m.n, 1, 0::bigint) OVER (ORDER BY m.seq) AS at,
                                                  lead(m.seq) OVER (ORDER BY m.seq) AS next
                                             FROM {log} AS m WHERE m.thread_id = p_thread_id) AS r
                               WHERE r.n < 1 OR r.seq <> r.at OR (r.next IS NULL AND r.seq::bigint + r.n <> cur.message_count))) THEN
            UPDATE {log} AS m SET tier = 32767 WHERE m.thread_id = p_thread_id AND m.tier <> 32767;
            UPDATE {threads} AS t SET tail_rows = 0 WHERE t.thread_id = p_thread_id;
        END IF;
    END IF;
    SELECT s.o_status, s.o_version, s.o_generation INTO o_status, o_version, o_generation
      FROM {save3_fn}(p_thread_id, p_expected, p_expected_generation, p_append_from, p_base_digest,
                      p_seqs, p_counts, p_chunks, p_docs, p_message_count, p_digest, p_head,
                      p_todos, p_interrupt, p_metadata, p_now, p_expires_at,
                      p_new_generation, p_keep_head, p_key, p_max_keys, p_merge_rows, p_chunk_bytes) AS s;
END
$body$;

CREATE FUNCTION {delete2_fn}(p_thread_id text, p_now double precision) RETURNS boolean
LANGUAGE plpgsql AS $body$
BEGIN
    IF {delete_fn}(p_thread_id, p_now) THEN
        RETURN true;
    END IF;
    DELETE FROM {log} AS m
     WHERE m.thread_id = p_thread_id AND NOT EXISTS (SELECT FROM {threads} AS t WHERE t.thread_id = p_thread_id);
    RETURN false;
END
$body$;
