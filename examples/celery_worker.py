"""A Celery worker: tasks that add a message to a conversation, and a beat task purging expired threads.

Run it from a clone, after ``pip install -e ".[celery,redis]"``, with a Redis server for the broker::

    celery --workdir examples -A celery_worker worker -P prefork -c 4      # 4 forked children
    celery --workdir examples -A celery_worker beat                        # purge_expired every hour

    python -c "from celery_worker import add_message; print(add_message.delay('alice', 'hi').get())"  # in examples/

The broker is ``$CELERY_BROKER_URL`` (default ``redis://localhost:6379/1``, results in
``/2``). The store is ``$AGENTS_PERSIST_URL``, else the embedded
``sqlite:///agents_persist.db`` in the working directory.
"""

import os

from celery import Celery

from agents_persist import AgentMessage, from_url
from agents_persist.celery import beat_entry, make_purge_task, task_idempotency_key

app = Celery(
    "celery_worker",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/1"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/2"),
)
app.conf.update(
    task_acks_late=True,  # a task whose worker died is delivered again: idempotency keys make that safe
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    task_default_queue=os.environ.get("CELERY_QUEUE", "celery"),
)

# One checkpointer per process, built at import: in the worker's main process, before
# it forks its children. Checkpointers are fork-safe: each child opens its own connections.
checkpointer = from_url()  # $AGENTS_PERSIST_URL, else sqlite:///agents_persist.db


@app.task(bind=True)
def add_message(self, thread_id, content):
    """Append one user message to ``thread_id``; a retried or redelivered task appends it once."""

    def add(state):
        state.messages.append(AgentMessage.user(content))

    stored = checkpointer.update(thread_id, add, idempotency_key=task_idempotency_key(self))
    return {"version": stored.version, "pid": os.getpid()}


purge_expired = make_purge_task(app, checkpointer)
app.conf.beat_schedule = {"agents-persist-purge-expired": beat_entry(purge_expired, every=3600)}
