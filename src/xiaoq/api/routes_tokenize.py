"""``POST /tokenize``: llama-server's tokenize endpoint, so a XiaoQ can be another XiaoQ's upstream
without a model file on the front (the upstream engine counts tokens through it)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, Field

from xiaoq.api.deps import EngineDep

router = APIRouter(tags=["openai"])


class TokenizeRequest(BaseModel):
    #: Well inside the body limit even when every character is JSON-escaped (6 bytes each), so an
    #: over-long text is a 422 naming the field rather than a 413 for the body.
    content: str = Field(max_length=100_000)


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, engine: EngineDep) -> dict[str, list[int]]:
    """Tokens of plain text (no special tokens parsed); off the event loop, as texts can be long."""
    return {"tokens": await asyncio.to_thread(engine.tokenize, body.content)}
