-- Migration 1: thread heads, message log, save/load/delete/purge functions.
-- Names in braces are identifiers filled in, quoted, by psycopg2.sql.Identifier;
-- the whole file runs as one script inside the migration transaction.

CREATE TABLE {threads} (
    thread_id text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    message_count integer NOT NULL,
    digest bytea NOT NULL,
    head bytea NOT NULL,
    updated_at double precision NOT NULL,
    expires_at double precision,
    tail_rows integer NOT NULL DEFAULT 0,
    CONSTRAINT {threads_pkey} PRIMARY KEY (thread_id)
);

CREATE INDEX {updated_idx} ON {threads} (updated_at, thread_id);

CREATE INDEX {expires_idx} ON {threads} (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE {messages} (
    thread_id text COLLATE "C" NOT NULL,
    seq integer NOT NULL,
    n integer NOT NULL,
    tier smallint NOT NULL,
    data bytea NOT NULL,
    CONSTRAINT {messages_pkey} PRIMARY KEY (thread_id, seq)
);

-- lz4 (PostgreSQL 14+ built with it) decompresses long logs several times faster than pglz.
DO $do$
BEGIN
    IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        EXECUTE 'ALTER TABLE {messages} ALTER COLUMN data SET COMPRESSION lz4';
    END IF;
END
$do$;

COMMENT ON TABLE {threads} IS
    'agents_persist thread heads: version, message count, prefix digest, encoded head, '
    'updated_at/expires_at as epoch seconds, tail_rows = log rows appended since the last merge';

COMMENT ON TABLE {messages} IS
    'agents_persist message log: row (thread_id, seq) holds n encoded messages starting at position seq, '
    'concatenated; tier counts the merges that made the row (32767: never merged again)';

-- One round trip per save: lock the head (or create it), check the
-- version and the stored prefix, write the new log rows and the head.
-- Returns o_status 0 (saved, o_version = new version), 1 (version
-- conflict, o_version = stored version) or 2 (stored prefix differs).
-- Rows of a rewrite are sealed; appended rows start at tier 0 and are
-- counted in the head's tail_rows. Once p_merge_rows of them accumulated,
-- the newest p_merge_rows rows are merged into one row of the next tier,
-- and so on up while the newest rows share a tier (sealed instead if the
-- merged row would exceed p_chunk_bytes), so most saves never look at the log.
CREATE FUNCTION {save_fn}(
    p_thread_id text, p_expected bigint, p_append_from integer, p_base_digest bytea,
    p_seqs integer[], p_counts integer[], p_chunks bytea[],
    p_message_count integer, p_digest bytea, p_head bytea,
    p_now double precision, p_expires_at double precision,
    p_merge_rows integer, p_chunk_bytes integer,
    OUT o_status integer, OUT o_version bigint)
LANGUAGE plpgsql AS $body$
DECLARE
    empty_digest CONSTANT bytea := decode(repeat('00', 16), 'hex');
    sealed CONSTANT smallint := 32767;
    cur_version bigint;
    cur_count integer;
    cur_digest bytea;
    cur_expires double precision;
    cur_tail integer;
    cur_tier integer := 0;
    run_rows integer;
    run_bytes bigint;
    run_start integer;
    merged_n integer;
    merged bytea;
BEGIN
    LOOP
        SELECT t.version, t.message_count, t.digest, t.expires_at, t.tail_rows
          INTO cur_version, cur_count, cur_digest, cur_expires, cur_tail
          FROM {threads} AS t WHERE t.thread_id = p_thread_id FOR UPDATE;
        EXIT WHEN FOUND;
        -- A missing thread is version 0 with an empty log.
        IF p_expected IS NOT NULL AND p_expected <> 0 THEN
            o_status := 1; o_version := 0; RETURN;
        END IF;
        IF p_append_from IS NOT NULL AND (p_append_from <> 0 OR p_base_digest <> empty_digest) THEN
            o_status := 2; o_version := 0; RETURN;
        END IF;
        INSERT INTO {threads} (thread_id, version, message_count, digest, head, updated_at, expires_at)
            VALUES (p_thread_id, 1, p_message_count, p_digest, p_head, p_now, p_expires_at)
            ON CONFLICT (thread_id) DO NOTHING;
        IF FOUND THEN
            DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id;
            INSERT INTO {messages} (thread_id, seq, n, tier, data)
                SELECT p_thread_id, u.seq, u.n, sealed, u.data FROM unnest(p_seqs, p_counts, p_chunks) AS u(seq, n, data);
            o_status := 0; o_version := 1; RETURN;
        END IF;
        -- A concurrent save created the thread first: lock its row and decide again.
    END LOOP;
    IF cur_expires IS NOT NULL AND cur_expires <= p_now THEN
        cur_version := 0; cur_count := 0; cur_digest := empty_digest;
    END IF;
    IF p_expected IS NOT NULL AND p_expected <> cur_version THEN
        o_status := 1; o_version := cur_version; RETURN;
    END IF;
    IF p_append_from IS NOT NULL AND (p_append_from <> cur_count OR p_base_digest <> cur_digest) THEN
        o_status := 2; o_version := cur_version; RETURN;
    END IF;
    IF p_append_from IS NULL OR cur_version = 0 THEN
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
    UPDATE {threads} AS t
       SET version = cur_version + 1, message_count = p_message_count, digest = p_digest,
           head = p_head, updated_at = p_now, expires_at = p_expires_at, tail_rows = cur_tail
     WHERE t.thread_id = p_thread_id;
    o_status := 0; o_version := cur_version + 1;
END
$body$;

-- A load is one statement: COPY (SELECT * FROM this function) in binary
-- format. STABLE, so both queries see the snapshot of that statement: head
-- and log come from one committed version. The first row is the head (only
-- if the thread exists and has not expired), then the log rows in order.
CREATE FUNCTION {load_fn}(p_thread_id text, p_now double precision)
RETURNS TABLE (o_version bigint, o_message_count integer, o_digest bytea, o_head bytea,
               o_updated_at double precision, o_expires_at double precision, o_data bytea)
LANGUAGE plpgsql STABLE AS $body$
BEGIN
    RETURN QUERY
        SELECT t.version, t.message_count, t.digest, t.head, t.updated_at, t.expires_at, NULL::bytea
          FROM {threads} AS t
         WHERE t.thread_id = p_thread_id AND (t.expires_at IS NULL OR t.expires_at > p_now);
    IF FOUND THEN
        RETURN QUERY
            SELECT NULL::bigint, NULL::integer, NULL::bytea, NULL::bytea,
                   NULL::double precision, NULL::double precision, m.data
              FROM {messages} AS m WHERE m.thread_id = p_thread_id ORDER BY m.seq;
    END IF;
END
$body$;

-- The second DELETE runs on a fresh snapshot (READ COMMITTED, volatile
-- function), so it also removes log rows of a save it waited for.
CREATE FUNCTION {delete_fn}(p_thread_id text, p_now double precision) RETURNS boolean
LANGUAGE plpgsql AS $body$
DECLARE
    old_expires double precision;
    existed boolean;
BEGIN
    DELETE FROM {threads} AS t WHERE t.thread_id = p_thread_id RETURNING t.expires_at INTO old_expires;
    existed := FOUND;
    DELETE FROM {messages} AS m WHERE m.thread_id = p_thread_id;
    RETURN existed AND (old_expires IS NULL OR old_expires > p_now);
END
$body$;

CREATE FUNCTION {purge_fn}(p_now double precision, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $body$
DECLARE
    doomed text[];
BEGIN
    WITH gone AS (
        DELETE FROM {threads} AS t
         WHERE t.expires_at <= p_now AND t.thread_id IN (
               SELECT x.thread_id FROM {threads} AS x
                WHERE x.expires_at <= p_now
                ORDER BY x.expires_at LIMIT p_limit
                  FOR UPDATE SKIP LOCKED)
        RETURNING t.thread_id)
    SELECT array_agg(gone.thread_id) INTO doomed FROM gone;
    IF doomed IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM {messages} AS m WHERE m.thread_id = ANY (doomed);
    RETURN cardinality(doomed);
END
$body$;
