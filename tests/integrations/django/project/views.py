"""Views of the test project: append a message to a thread, show a thread."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse

from agents_persist import AgentMessage, AgentStateSnapshot
from agents_persist.django import checkpointers


def add_message(request: HttpRequest, thread_id: str) -> JsonResponse:
    content = json.loads(request.body or b"{}").get("content", "")

    def add(state: AgentStateSnapshot) -> None:
        state.messages.append(AgentMessage.user(content))

    stored = checkpointers["default"].update(thread_id, add)
    return JsonResponse({"version": stored.version, "count": len(stored.messages)})


def show(request: HttpRequest, thread_id: str) -> JsonResponse:
    state = checkpointers["default"].load(thread_id)
    if state is None:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse({"version": state.version, "count": len(state.messages)})
