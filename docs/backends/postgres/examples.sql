-- The example queries of docs/backends/postgres-sql.rst, against the default
-- table_name "agents_persist" (with search_path set to its schema). Each
-- "-- name:" section is shown in the docs (literalinclude) and run by
-- tests/backends/postgres/test_sql_interface.py on data saved through the library.

-- name: active_last_24_hours
SELECT thread_id, message_count, updated_at
  FROM agents_persist_threads
 WHERE updated_at > now() - interval '24 hours'
 ORDER BY updated_at DESC;
-- end

-- name: by_message_count
SELECT thread_id, message_count
  FROM agents_persist_threads
 ORDER BY message_count DESC, thread_id
 LIMIT 10;
-- end

-- name: search_ilike
SELECT thread_id, seq, role, content
  FROM agents_persist_messages
 WHERE content ILIKE '%refund%'
 ORDER BY thread_id, seq;
-- end

-- name: create_search_index
CREATE INDEX agents_persist_log_search_idx
    ON agents_persist_log USING gin (agents_persist_search(doc));
-- end

-- name: search_full_text
SELECT thread_id, seq, role, content
  FROM agents_persist_messages
 WHERE chunk_search @@ websearch_to_tsquery('simple', 'refund')
   AND to_tsvector('simple', coalesce(content, content_json::text))
       @@ websearch_to_tsquery('simple', 'refund')
 ORDER BY thread_id, seq;
-- end

-- name: create_metadata_index
CREATE INDEX agents_persist_customer_idx
    ON agents_persist ((metadata ->> 'customer_id'));
-- end

-- name: by_metadata_key
SELECT thread_id, version, message_count
  FROM agents_persist_threads
 WHERE metadata ->> 'customer_id' = 'cust-42';
-- end

-- name: tool_calls_by_name
SELECT m.thread_id, m.seq, call ->> 'id' AS call_id, call -> 'arguments' AS arguments
  FROM agents_persist_messages AS m,
       jsonb_array_elements(m.tool_calls) AS call
 WHERE call ->> 'name' = 'issue_refund'
 ORDER BY m.thread_id, m.seq;
-- end

-- name: storage_per_thread
SELECT thread_id, message_count, stored_bytes, pg_size_pretty(stored_bytes) AS size
  FROM agents_persist_threads
 ORDER BY stored_bytes DESC, thread_id;
-- end

-- name: pending_approvals
SELECT thread_id,
       current_interrupt ->> 'tool_name' AS tool,
       current_interrupt -> 'tool_args' AS tool_args,
       current_interrupt ->> 'policy_note' AS note
  FROM agents_persist_threads
 WHERE current_interrupt IS NOT NULL
 ORDER BY updated_at;
-- end

-- name: rows_of_one_thread
-- After cp.delete("cust-42/support"): every row of the thread, in the views and the tables.
SELECT (SELECT count(*) FROM agents_persist_threads WHERE thread_id = 'cust-42/support') AS threads,
       (SELECT count(*) FROM agents_persist_messages WHERE thread_id = 'cust-42/support') AS messages,
       (SELECT count(*) FROM agents_persist WHERE thread_id = 'cust-42/support') AS head_rows,
       (SELECT count(*) FROM agents_persist_log WHERE thread_id = 'cust-42/support') AS log_rows;
-- end
