-- A read-only role for analysts: the two views and nothing else. Run as the
-- owner of the tables (the role agents_persist connects as); replace "public"
-- by the checkpointer's schema. Views run with their owner's rights on the
-- tables below them, so the role needs no privilege on the tables themselves.

-- name: analyst_role
CREATE ROLE agents_persist_analyst NOLOGIN;
GRANT USAGE ON SCHEMA public TO agents_persist_analyst;
GRANT SELECT ON public.agents_persist_threads, public.agents_persist_messages TO agents_persist_analyst;
-- end
