"""Turning a prompt plus history into chat messages for the model's chat template.

History becomes real ``user`` / ``assistant`` messages, never a flat "用户:…小Q:" transcript: the
chat template then renders each turn with the markers the model was trained on (ChatML for Qwen),
which is what makes it answer from earlier turns and keeps the token prefix stable for KV reuse.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from xiaoq.engine.types import ChatMessage

HistoryTurn = Union[tuple[str, str], Sequence[str], Mapping[str, Any]]


def history_messages(history: Iterable[HistoryTurn]) -> list[ChatMessage]:
    """Messages of past turns.

    Accepts ``(user, bot)`` pairs, the classic ``{"user": ..., "bot": ...}`` dicts (either side may be
    empty or missing, e.g. a turn whose reply failed), or ready ``{"role", "content"}`` messages.
    """
    out: list[ChatMessage] = []
    for turn in history:
        if isinstance(turn, Mapping):
            if "role" in turn:
                out.append(ChatMessage(role=str(turn["role"]), content=str(turn.get("content") or "")))
                continue
            user, bot = turn.get("user"), turn.get("bot")
        else:
            user, bot = turn
        if user:
            out.append(ChatMessage(role="user", content=str(user)))
        if bot:
            out.append(ChatMessage(role="assistant", content=str(bot)))
    return out


def build_messages(
    prompt: str,
    history: Iterable[HistoryTurn] = (),
    system: Optional[str] = None,
    default_system: str = "",
) -> list[ChatMessage]:
    """The system prompt (the request's, else the default; none when both are empty), the history
    as user/assistant messages, then the new user prompt."""
    messages: list[ChatMessage] = []
    sys_text = system if system is not None else default_system
    if sys_text:
        messages.append(ChatMessage(role="system", content=sys_text))
    messages += history_messages(history)
    messages.append(ChatMessage(role="user", content=prompt))
    return messages
