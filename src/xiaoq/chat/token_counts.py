"""Past turns with the token count of every stored message, each counted once.

Why: the context budget counts a conversation's past turns before every reply. Tokenizing the
whole history again each time costs time in proportion to the conversation (seconds for a long one
on two cores) for a number that never changes while the message does not. So the count of a
message's content is stored with it, under the engine's ``tokenizer_id`` (another model's
tokenizer counts differently), and the budget passes it to the engine as the message's ``tokens``.
The store forgets a count when the content changes.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from xiaoq.chat.budget import Turn
from xiaoq.engine.types import Engine
from xiaoq.store import Store, iter_turns


async def counted_turns(store: Store, engine: Engine, conversation_id: str, past: list[dict[str, Any]]) -> list[Turn]:
    """``past`` (stored messages, oldest first) as budget turns carrying their token counts;
    messages not counted yet are counted now, off the event loop, and the counts stored."""
    key = engine.tokenizer_id
    known = await asyncio.to_thread(store.token_counts, conversation_id, key)
    missing = [m for m in past if m["id"] not in known and m["role"] in ("user", "assistant")]
    if missing:
        fresh = await asyncio.to_thread(_count, engine, missing)
        await asyncio.to_thread(store.set_token_counts, key, fresh)
        known.update({mid: n for mid, _, n in fresh})
    return [_turn(u, a, known) for u, a in iter_turns(past)]


def _count(engine: Engine, messages: list[dict[str, Any]]) -> list[tuple[int, str, int]]:
    return [(m["id"], m["content"], len(engine.tokenize(m["content"]))) for m in messages]


def _turn(user: dict[str, Any], reply: Optional[dict[str, Any]], known: dict[int, int]) -> Turn:
    return Turn(
        user=user["content"],
        assistant=reply["content"] if reply is not None else "",
        id=(reply or user)["id"],
        user_tokens=known.get(user["id"]),
        assistant_tokens=known.get(reply["id"]) if reply is not None else None,
    )
