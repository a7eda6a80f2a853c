"""Server policy decided once, here, and passed down as plain values: which system prompt a request
gets and how long a reply may be. The engine applies neither; it generates what it is given.
"""

from __future__ import annotations

from typing import Optional

from xiaoq.config import Settings, default_system_prompt
from xiaoq.engine.types import ChatMessage


def system_prompt(settings: Settings, requested: Optional[str], message: str = "") -> str:
    """The request's (or conversation's) system prompt; ``None`` means the server's default (XiaoQ's
    own in the language of ``message``, see :func:`xiaoq.config.default_system_prompt`) and ``""``
    means none at all."""
    return default_system_prompt(settings.system_prompt, message) if requested is None else requested


def with_default_system(settings: Settings, messages: list[ChatMessage]) -> list[ChatMessage]:
    """OpenAI-style messages: the server's default system prompt first when the client sent none."""
    if any(m["role"] == "system" for m in messages):
        return list(messages)
    users = [m["content"] for m in messages if m["role"] == "user"]
    return [ChatMessage(role="system", content=system_prompt(settings, None, users[-1] if users else "")), *messages]


def default_max_tokens(settings: Settings) -> int:
    """The reply length a request gets when it does not say."""
    return min(settings.default_max_tokens, settings.max_tokens)


def max_tokens(settings: Settings, requested: Optional[int], room: Optional[int] = None) -> int:
    """The reply length to ask the engine for: the requested one capped at ``--max-tokens``, or the
    default shrunk to the ``room`` the prompt leaves (OpenAI's rule: only a client that explicitly
    asks for more than fits gets ``context_length_exceeded``)."""
    if requested is not None:
        return max(1, min(requested, settings.max_tokens))
    default = default_max_tokens(settings)
    return min(default, room) if room is not None and room >= 1 else default
