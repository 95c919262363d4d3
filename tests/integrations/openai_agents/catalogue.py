"""Session items of every kind the Agents SDK writes (Responses input items), as it writes them.

``SDK_OUTPUT`` goes through the SDK's own conversion of model output
(``ModelResponse.to_input_items``: ``model_dump(exclude_unset=True)``, so its
key order); the rest are written as the SDK and its users write them.
"""

from __future__ import annotations

from typing import Any, Dict, List

from agents.items import ModelResponse
from agents.usage import Usage
from openai.types.responses import ResponseOutputMessage, ResponseOutputRefusal, ResponseOutputText, ResponseReasoningItem
from openai.types.responses.response_reasoning_item import Content, Summary

from tests.integrations.openai_agents.fake import call, text

SDK_OUTPUT: List[Any] = [
    text("msg_1", "Hello"),
    ResponseOutputMessage(
        id="msg_2",
        role="assistant",
        status="completed",
        type="message",
        content=[
            ResponseOutputText(
                text="See [1].",
                type="output_text",
                annotations=[
                    {"type": "url_citation", "url": "https://example.com", "title": "Ex", "start_index": 4, "end_index": 7}
                ],  # type: ignore[list-item]
                logprobs=[],
            ),
            ResponseOutputRefusal(refusal="I can't share that.", type="refusal"),
        ],
    ),
    call("fc_1", "call_1", "get_weather", '{"city":"Oslo"}'),
    call("fc_2", "call_2", "search", '{ "q" : "a\\u00e9",  "n":1.0 }'),  # spacing, escapes and 1.0 as sent
    call("fc_3", "call_3", "transfer_to_billing", "{}"),  # a handoff is a function call
    ResponseReasoningItem(
        id="rs_1",
        type="reasoning",
        summary=[Summary(text="Think.", type="summary_text")],
        content=[Content(text="raw chain", type="reasoning_text")],
        encrypted_content="gAAAAB-opaque==",
        status="completed",
    ),
]


def sdk_output_items() -> List[Dict[str, Any]]:
    """``SDK_OUTPUT`` as the SDK stores it in a session."""
    return ModelResponse(output=SDK_OUTPUT, usage=Usage(), response_id=None).to_input_items()  # type: ignore[return-value]


WRITTEN: List[Dict[str, Any]] = [
    {"content": "Weather in Oslo?", "role": "user"},  # Runner input, easy form
    {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0K", "detail": "low"},
        ],
    },
    {"type": "message", "role": "developer", "content": "Be brief."},
    {"role": "system", "content": "You are triage."},
    {"role": "assistant", "content": "Earlier answer."},
    {"call_id": "call_1", "output": "light snow in Oslo", "type": "function_call_output"},
    {"call_id": "call_3", "output": '{"assistant": "billing"}', "type": "function_call_output"},  # the handoff's output
    {
        "call_id": "call_4",
        "output": [{"type": "input_text", "text": "chart"}, {"type": "input_image", "image_url": "https://x/y.png"}],
        "type": "function_call_output",
    },
    {
        "type": "computer_call",
        "id": "cu_1",
        "call_id": "cc_1",
        "action": {"type": "click", "x": 1, "y": 2, "button": "left"},
        "pending_safety_checks": [],
        "status": "completed",
    },
    {
        "type": "computer_call_output",
        "call_id": "cc_1",
        "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AA"},
    },
    {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "oslo"}},
    {"type": "file_search_call", "id": "fs_1", "queries": ["q"], "status": "completed", "results": None},
    {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "s", "tools": [{"name": "t", "input_schema": {}}]},
    {"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "s", "name": "t", "arguments": "{}"},
    {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
    {"type": "mcp_call", "id": "mcp_1", "server_label": "s", "name": "t", "arguments": '{"a":1}', "output": "ok"},
    {"type": "image_generation_call", "id": "ig_1", "result": "iVBOR", "status": "completed"},
    {"type": "code_interpreter_call", "id": "ci_1", "code": "1+1", "container_id": "c", "outputs": None, "status": "completed"},
    {
        "type": "local_shell_call",
        "id": "ls_1",
        "call_id": "lsc_1",
        "action": {"type": "exec", "command": ["ls"], "env": {}},
        "status": "completed",
    },
    {"type": "local_shell_call_output", "id": "lso_1", "output": "a\nb"},
    {"type": "shell_call", "call_id": "sh_1", "action": {"commands": ["ls"]}, "status": "completed"},
    {
        "type": "shell_call_output",
        "call_id": "sh_1",
        "output": [{"stdout": "a", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}],
    },
    {
        "type": "apply_patch_call",
        "call_id": "ap_1",
        "operation": {"type": "update_file", "path": "a.py", "diff": "@@"},
        "status": "completed",
    },
    {"type": "apply_patch_call_output", "call_id": "ap_1", "status": "completed", "output": "done"},
    {"type": "custom_tool_call", "call_id": "ct_1", "name": "grammar", "input": "raw text"},
    {"type": "custom_tool_call_output", "call_id": "ct_1", "output": "ok"},
    {"type": "item_reference", "id": "msg_0"},
    {"type": "compaction", "encrypted_content": "opaque"},
    # What the converter alone would not give back exactly: a None id or status, a key order of its own.
    {"id": None, "call_id": "call_5", "output": "x", "type": "function_call_output", "status": None},
    {"type": "function_call", "id": None, "call_id": "call_6", "name": "f", "arguments": "{}", "status": None},
    {"role": "user", "content": "ordered", "type": "message", "status": "completed", "id": "msg_9"},
]


def every_item() -> List[Dict[str, Any]]:
    """Every catalogued item, in one list."""
    return sdk_output_items() + WRITTEN
