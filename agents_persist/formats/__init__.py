"""Lossless converters between :class:`~agents_persist.AgentMessage` and provider message formats.

* :mod:`agents_persist.formats.openai_chat`: OpenAI chat completions messages.
* :mod:`agents_persist.formats.openai_responses`: OpenAI Responses API input and output items.
* :mod:`agents_persist.formats.anthropic`: Anthropic Messages API messages and content blocks.

Each module has a ``from_*`` and a ``to_*`` function (also reachable as
methods of :class:`~agents_persist.AgentMessage`): what a ``from_*`` reads, the
matching ``to_*`` writes back equal, the raw tool-call argument strings byte
for byte. The provider SDKs are never imported; their objects are accepted
through ``model_dump()``.
"""

from . import anthropic, openai_chat, openai_responses

__all__ = ["anthropic", "openai_chat", "openai_responses"]
