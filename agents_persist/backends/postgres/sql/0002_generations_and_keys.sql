-- Migration 2: generations (a thread deleted or expired and created again never
-- looks like the old one) and idempotency keys (a retried save is applied once).
-- Names in braces are identifiers filled in, quoted, by psycopg2.sql.Identifier;
-- the whole file runs as one script inside the migration transaction.

-- generation names one incarnation of a thread (0 for threads stored before this
-- migration). applied_keys/applied_versions are the idempotency keys of the latest
-- saves (UTF-8 bytes, so any key is storable) and the version each one produced,
-- oldest first, at most p_max_keys of them.
ALTER TABLE {threads}
    ADD COLUMN generation bigint NOT NULL DEFAULT 0,
    ADD COLUMN applied_keys bytea[] NOT NULL DEFAULT '{{}}',
    ADD COLUMN applied_versions bigint[] NOT NULL DEFAULT '{{}}';

COMMENT ON COLUMN {threads}.generation IS
    'agents_persist: incarnation of the thread, new each time it is created (0: stored before migration 2)';

COMMENT ON COLUMN {threads}.applied_keys IS
    'agents_persist: idempotency keys (UTF-8) of the latest saves, oldest first; applied_versions[i] is what key i produced';

-- One round trip per save, as the save function of migration 1, implementing
-- agents_persist.planning.PlannedWrite: lock the head (or create it); a thread
-- that expired counts as missing. In order: a key among applied_keys returns
-- o_status 3 (duplicate, o_version = the version it produced) and writes
-- nothing; then the version check, with the generation when a write expects an
-- existing thread of a known incarnation (1, conflict, o_version = stored
-- version); then the append's base prefix (2). Otherwise the log is written as
-- before (rows of a rewrite sealed, appended rows merged tier by tier) and the
-- head gets version + 1, the stored generation (p_new_generation for a created
-- thread), the stored head blob if p_keep_head and the thread was live, and
-- p_key recorded with the new version (o_status 0).
CREATE FUNCTION {save2_fn}(
    p_thread_id text, p_expected bigint, p_expected_generation bigint,
    p_append_from integer, p_base_digest bytea,
    p_seqs integer[], p_counts integer[], p_chunks bytea[],
    p_message_count integer, p_digest bytea, p_head bytea,
    p_now double precision, p_expires_at double precision,
    p_new_generation bigint, p_keep_head boolean, p_key bytea, p_max_keys integer,
    p_merge_rows integer, p_chunk_bytes integer,
    OUT o_status integer, OUT o_version bigint, OUT o_generation bigint)
LANGUAGE plpgsql AS $body$
DECLARE
    empty_digest CONSTANT bytea := decode(repeat('00', 16), 'hex');
    sealed CONSTANT smallint := 32767;
    cur_version bigint;
    cur_count integer;
    cur_digest bytea;
    cur_expires double precision;
    cur_tail integer;
    cur_generation bigint;
    cur_keys bytea[];
    cur_versions bigint[];
    live boolean;
    key_at integer;
    kept integer;
    cur_tier integer := 0;
    run_rows integer;
    run_bytes bigint;
    run_start integer;
    merged_n integer;
    merged bytea;
BEGIN
    LOOP
        SELECT t.version, t.message_count, t.digest, t.expires_at, t.tail_rows,
               t.generation, t.applied_keys, t.applied_versions
          INTO cur_version, cur_count, cur_digest, cur_expires, cur_tail, cur_generation, cur_keys, cur_versions
          FROM {threads} AS t WHERE t.thread_id = p_thread_id FOR UPDATE;
        EXIT WHEN FOUND;
        -- A missing thread is version 0 with an empty log and no keys.
        IF p_expected IS NOT NULL AND p_expected <> 0 THEN
            o_status := 1; o_version := 0; o_generation := 0; RETURN;
        END IF;
        IF p_append_from IS NOT NULL AND (p_append_from <> 0 OR p_base_digest <> empty_digest) THEN
            o_status := 2; o_version := 0; o_generation := 0; RETURN;
        END IF;
        INSERT INTO {threads} (thread_id, version, message_count, digest, head, updated_at, expires_at,
                               generation, applied_keys, applied_versions)
            VALUES (p_thread_id, 1, p_message_count, p_digest, p_head, p_now, p_expires_at, p_new_generation,
                    CASE WHEN p_key IS NULL THEN '{{}}'::bytea[] ELSE ARRAY[p_key] END,
                    CASE WHEN p_key IS NULL THEN '{{}}'::bigint[] ELSE ARRAY[1::bigint] END)
            ON CONFLICT (thread_id) DO NOTHING;
        IF FOUND THEN
            DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id;
            INSERT INTO {messages} (thread_id, seq, n, tier, data)
                SELECT p_thread_id, u.seq, u.n, sealed, u.data FROM unnest(p_seqs, p_counts, p_chunks) AS u(seq, n, data);
            o_status := 0; o_version := 1; o_generation := p_new_generation; RETURN;
        END IF;
        -- A concurrent save created the thread first: lock its row and decide again.
    END LOOP;
    live := cur_expires IS NULL OR cur_expires > p_now;
    IF NOT live THEN
        cur_version := 0; cur_count := 0; cur_digest := empty_digest;
        cur_generation := p_new_generation; cur_keys := '{{}}'; cur_versions := '{{}}';
    END IF;
    IF p_key IS NOT NULL THEN
        key_at := array_position(cur_keys, p_key);
        IF key_at IS NOT NULL THEN
            o_status := 3; o_version := cur_versions[key_at]; o_generation := cur_generation; RETURN;
        END IF;
    END IF;
    IF p_expected IS NOT NULL AND (p_expected <> cur_version OR (
           p_expected > 0 AND p_expected_generation IS NOT NULL AND p_expected_generation <> cur_generation)) THEN
        o_status := 1; o_version := cur_version; o_generation := cur_generation; RETURN;
    END IF;
    IF p_append_from IS NOT NULL AND (p_append_from <> cur_count OR p_base_digest <> cur_digest) THEN
        o_status := 2; o_version := cur_version; o_generation := cur_generation; RETURN;
    END IF;
    IF p_append_from IS NULL OR NOT live THEN
        DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id;
        INSERT INTO {messages} (thread_id, seq, n, tier, data)
            SELECT p_thread_id, u.seq, u.n, sealed, u.data FROM unnest(p_seqs, p_counts, p_chunks) AS u(seq, n, data);
        cur_tail := 0;
    ELSIF cardinality(p_seqs) > 0 THEN
        INSERT INTO {messages} (thread_id, seq, n, tier, data)
            SELECT p_thread_id, u.seq, u.n, 0, u.data FROM unnest(p_seqs, p_counts, p_chunks) AS u(seq, n, data);
        cur_tail := cur_tail + cardinality(p_seqs);
    END IF;
    IF p_merge_rows > 1 AND cur_tail >= p_merge_rows THEN
        cur_tail := 0;
        WHILE cur_tier < sealed - 1 LOOP
            SELECT count(*) FILTER (WHERE s.tier = cur_tier), sum(octet_length(s.data)), min(s.seq)
              INTO run_rows, run_bytes, run_start
              FROM (SELECT m.seq, m.tier, m.data FROM {messages} AS m
                     WHERE m.thread_id = p_thread_id ORDER BY m.seq DESC LIMIT p_merge_rows) AS s;
            EXIT WHEN run_rows < p_merge_rows;
            IF run_bytes > p_chunk_bytes THEN
                UPDATE {messages} AS m SET tier = sealed WHERE m.thread_id = p_thread_id AND m.seq >= run_start;
                EXIT;
            END IF;
            SELECT sum(m.n), string_agg(m.data, ''::bytea ORDER BY m.seq) INTO merged_n, merged
              FROM {messages} AS m WHERE m.thread_id = p_thread_id AND m.seq >= run_start;
            DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id AND m.seq >= run_start;
            cur_tier := cur_tier + 1;
            INSERT INTO {messages} (thread_id, seq, n, tier, data)
                VALUES (p_thread_id, run_start, merged_n, cur_tier, merged);
        END LOOP;
    END IF;
    IF p_key IS NOT NULL THEN
        cur_keys := array_append(cur_keys, p_key);
        cur_versions := array_append(cur_versions, cur_version + 1);
        kept := cardinality(cur_keys);
        IF kept > p_max_keys THEN
            cur_keys := cur_keys[kept - p_max_keys + 1 : kept];
            cur_versions := cur_versions[kept - p_max_keys + 1 : kept];
        END IF;
    END IF;
    UPDATE {threads} AS t
       SET version = cur_version + 1, message_count = p_message_count, digest = p_digest,
           head = CASE WHEN p_keep_head AND live THEN t.head ELSE p_head END,
           updated_at = p_now, expires_at = p_expires_at, tail_rows = cur_tail,
           generation = cur_generation, applied_keys = cur_keys, applied_versions = cur_versions
     WHERE t.thread_id = p_thread_id;
    o_status := 0; o_version := cur_version + 1; o_generation := cur_generation;
END
$body$;

-- Processes still running an agents_persist from before this migration call the
-- save function of migration 1: it now runs the one above, so their saves keep
-- generations and keys right too (a created thread gets a random generation).
CREATE OR REPLACE FUNCTION {save_fn}(
    p_thread_id text, p_expected bigint, p_append_from integer, p_base_digest bytea,
    p_seqs integer[], p_counts integer[], p_chunks bytea[],
    p_message_count integer, p_digest bytea, p_head bytea,
    p_now double precision, p_expires_at double precision,
    p_merge_rows integer, p_chunk_bytes integer,
    OUT o_status integer, OUT o_version bigint)
LANGUAGE sql AS $body$
    SELECT s.o_status, s.o_version
      FROM {save2_fn}(p_thread_id, p_expected, NULL, p_append_from, p_base_digest, p_seqs, p_counts, p_chunks,
                      p_message_count, p_digest, p_head, p_now, p_expires_at,
                      (random() * 9.2e18)::bigint + 1, false, NULL, 32, p_merge_rows, p_chunk_bytes) AS s
$body$;

-- The load of migration 1 plus the head's generation and keys (the load function
-- of migration 1 stays, unchanged, for processes from before this migration).
CREATE FUNCTION {load2_fn}(p_thread_id text, p_now double precision)
RETURNS TABLE (o_version bigint, o_message_count integer, o_digest bytea, o_head bytea,
               o_updated_at double precision, o_expires_at double precision,
               o_generation bigint, o_applied_keys bytea[], o_applied_versions bigint[], o_data bytea)
LANGUAGE plpgsql STABLE AS $body$
BEGIN
    RETURN QUERY
        SELECT t.version, t.message_count, t.digest, t.head, t.updated_at, t.expires_at,
               t.generation, t.applied_keys, t.applied_versions, NULL::bytea
          FROM {threads} AS t
         WHERE t.thread_id = p_thread_id AND (t.expires_at IS NULL OR t.expires_at > p_now);
    IF FOUND THEN
        RETURN QUERY
            SELECT NULL::bigint, NULL::integer, NULL::bytea, NULL::bytea, NULL::double precision,
                   NULL::double precision, NULL::bigint, NULL::bytea[], NULL::bigint[], m.data
              FROM {messages} AS m WHERE m.thread_id = p_thread_id ORDER BY m.seq;
    END IF;
END
$body$;

-- The delete of migration 1 removed the thread's log rows even when it found no
-- head to delete. Its second DELETE runs on a fresh snapshot (READ COMMITTED), so
-- when another transaction created the thread again in between, it removed the
-- new incarnation's rows and left its head (message_count > rows: a corrupt
-- thread). Log rows go only with the head this delete removed: a transaction
-- that wants to create the thread meanwhile waits for this one on the head's key.
CREATE OR REPLACE FUNCTION {delete_fn}(p_thread_id text, p_now double precision) RETURNS boolean
LANGUAGE plpgsql AS $body$
DECLARE
    old_expires double precision;
BEGIN
    DELETE FROM {threads} AS t WHERE t.thread_id = p_thread_id RETURNING t.expires_at INTO old_expires;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id;
    RETURN old_expires IS NULL OR old_expires > p_now;
END
$body$;
