"""Django views: POST a user's message to a conversation, GET the conversation back.

Run the project from a clone, after ``pip install -e ".[django]"``::

    cd examples/django_project
    python manage.py check                  # also checks the AGENTS_PERSIST setting, without connecting
    python manage.py runserver              # 127.0.0.1:8000

    curl -X POST 127.0.0.1:8000/threads/alice/messages -H "Content-Type: application/json" -d '{"content": "hi"}'
    curl 127.0.0.1:8000/threads/alice
    python manage.py agents_persist show alice

The store is ``$AGENTS_PERSIST_URL`` (``redis://...``, ``postgresql://...``), else the
embedded ``sqlite:///agents_persist.db`` in the working directory (``settings.AGENTS_PERSIST``).
"""

import json

from django.http import Http404, HttpRequest, JsonResponse

from agents_persist import AgentMessage, AgentStateSnapshot
from agents_persist.django import checkpointers


def add_message(request: HttpRequest, thread_id: str) -> JsonResponse:
    content = json.loads(request.body or b"{}").get("content", "")

    def turn(state: AgentStateSnapshot) -> None:  # run again if another worker saved the thread meanwhile
        state.messages.append(AgentMessage.user(content))
        # your agent answers here, in the same update: state.messages.append(AgentMessage.assistant(...))

    stored = checkpointers["default"].update(thread_id, turn)
    return JsonResponse({"version": stored.version, "count": len(stored.messages)})


def show(request: HttpRequest, thread_id: str) -> JsonResponse:
    state = checkpointers["default"].load(thread_id)
    if state is None:
        raise Http404("no such thread")
    return JsonResponse({"version": state.version, "count": len(state.messages)})
