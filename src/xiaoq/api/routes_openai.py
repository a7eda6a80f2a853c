"""OpenAI-compatible ``POST /v1/chat/completions`` and ``GET /v1/models``.

The shapes follow OpenAI's exactly (``chat.completion`` / ``chat.completion.chunk`` objects, a first
chunk carrying ``delta.role``, ``stream_options.include_usage`` adding a final chunk with empty
``choices``, ``data: [DONE]`` last) so the official ``openai`` client works unchanged. While one model
is served, any ``model`` value is accepted (as llama-server does). Unknown fields are ignored, as
OpenAI clients send many optional ones; those that would change the answer's shape (``n`` > 1) are
refused with 400.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, AsyncIterator, Literal, Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from xiaoq.api.deps import EngineDep, MetricsDep, SettingsDep, viewer_kbs
from xiaoq.api.errors import error_responses
from xiaoq.api.fields import Bool, Float, Int, Text
from xiaoq.api.routes_chat import Seed, Stop, check_list_length
from xiaoq.api.sampling import generation_request
from xiaoq.api.sse import SSE_DONE, SSE_RESPONSE, EventStream, sse_data
from xiaoq.api.streaming import TrackedGeneration
from xiaoq.chat import policy
from xiaoq.chat.grounding import ground_messages
from xiaoq.engine.types import ChatMessage, GenerationResult
from xiaoq.errors import EngineError, InvalidRequest, NotFound
from xiaoq.kb.answer import Grounding
from xiaoq.logsafe import log_prompt

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(404))

#: The finish reasons OpenAI clients know.
OPENAI_FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls"})


def finish_fields(reason: str) -> dict[str, Any]:
    """A choice's ``finish_reason`` for OpenAI clients: ours when OpenAI has it, else ``"stop"``
    (the text ended normally as far as a client can tell) with ours kept in
    ``native_finish_reason`` (OpenRouter's name for it), e.g. ``cancelled`` or a new ``repetition``."""
    if reason in OPENAI_FINISH_REASONS:
        return {"finish_reason": reason}
    return {"finish_reason": "stop", "native_finish_reason": reason}


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


def _text_parts(v: Any) -> Any:
    """A plain string is one text part (normalised before validation, not a Union, so errors name
    ``messages[i].content...`` plainly)."""
    return [{"type": "text", "text": v}] if isinstance(v, str) else v


_TEXT_PART_SCHEMA = {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
#: What a client may send: a string, a list of text parts, or null.
CONTENT_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART_SCHEMA}, {"type": "null"}]}


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # "developer" is what newer OpenAI clients send in place of "system".
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[Optional[list[TextPart]], BeforeValidator(_text_parts), WithJsonSchema(CONTENT_SCHEMA)] = None

    def as_chat_message(self) -> ChatMessage:
        text = "".join(p.text for p in self.content or [])
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=text)


class StreamOptions(BaseModel):
    include_usage: Bool = False


class ChatCompletionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: Bool = False
    stream_options: Optional[StreamOptions] = None
    max_tokens: Optional[Int] = Field(None, ge=1)
    max_completion_tokens: Optional[Int] = Field(None, ge=1)
    temperature: Optional[Float] = Field(None, ge=0, le=2)
    top_p: Optional[Float] = Field(None, gt=0, le=1)
    seed: Optional[Seed] = None
    stop: Optional[Stop] = None
    n: Optional[Int] = Field(None, ge=1)
    presence_penalty: Optional[Float] = Field(None, ge=-2, le=2)
    frequency_penalty: Optional[Float] = Field(None, ge=-2, le=2)
    #: llama-server's extensions.
    min_p: Optional[Float] = Field(None, ge=0, le=1)
    repeat_penalty: Optional[Float] = Field(None, gt=0, le=2)
    #: OpenAI's token id (a JSON object key, so a string of digits) -> bias in [-100, 100].
    logit_bias: Optional[dict[Annotated[int, Field(ge=0)], Annotated[Float, Field(ge=-100, le=100)]]] = Field(None, max_length=1024)
    #: llama-server's extension: generate until max_tokens even past the end-of-reply token.
    ignore_eos: Bool = False
    #: XiaoQ's extension: answer from this knowledge base; the response gains ``citations``.
    kb: Optional[str] = Field(None, max_length=64)
    #: XiaoQ's: end a runaway repetition (default: the server's --loop-guard).
    loop_guard: Optional[Bool] = None
    #: XiaoQ's: regenerate once a reply that starts in the wrong language (default: --language-check).
    language_check: Optional[Bool] = None


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


class ChunkFactory:
    """Builds the ``chat.completion.chunk`` objects of one streamed answer (same id and created)."""

    def __init__(self, model: str, include_usage: bool):
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage

    def chunk(self, delta: dict[str, Any], finish_reason: Optional[str] = None) -> dict[str, Any]:
        finish = finish_fields(finish_reason) if finish_reason is not None else {"finish_reason": None}
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, **finish}],
        }
        if self.include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, result: GenerationResult) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": result.usage.to_openai(),
        }


@router.post("/chat/completions", response_model=None, responses={200: {"content": {"application/json": {}, **SSE_RESPONSE[200]["content"]}}})
async def chat_completions(
    body: ChatCompletionBody, request: Request, engine: EngineDep, settings: SettingsDep, metrics: MetricsDep
) -> Union[JSONResponse, EventStream]:
    if body.n not in (None, 1):
        raise InvalidRequest("Only n=1 is supported.", code="unsupported_parameter", param="n")
    check_list_length("messages", body.messages, settings.max_messages)
    messages = policy.with_default_system(settings, [m.as_chat_message() for m in body.messages])
    log_prompt(settings.log_prompts, "/v1/chat/completions", str(messages[-1]["content"]))
    grounding = None
    if body.kb is not None:
        messages, grounding = await ground_messages(viewer_kbs(request, request.app.state.kb), engine, body.kb, messages)
    gen_request = await generation_request(
        settings,
        engine,
        messages,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens,
        seed=body.seed,
        stop=body.stop,
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        min_p=body.min_p,
        repeat_penalty=body.repeat_penalty,
        logit_bias=body.logit_bias,
        ignore_eos=body.ignore_eos,
        loop_guard=body.loop_guard,
        language_check=body.language_check,
    )
    tracked = await TrackedGeneration.submit(engine, gen_request, metrics, "/v1/chat/completions", request.app.state.draining, grounding)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = ChunkFactory(engine.model_name, include_usage)
        return EventStream(completion_chunks(tracked, chunks, grounding), on_close=tracked.cancel)

    text = await tracked.collect(request)
    result = tracked.result
    if result.finish_reason == "error":
        raise EngineError(result.error or "Generation failed.")
    if result.text_length is not None:
        text = text[: result.text_length]
    return JSONResponse(
        {
            "id": completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": engine.model_name,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    **finish_fields(result.finish_reason),
                }
            ],
            "usage": result.usage.to_openai(),
            **_citations(grounding),
        }
    )


def _citations(grounding: Optional[Grounding]) -> dict[str, Any]:
    """``citations`` and ``retrieved`` (extra fields): what was retrieved explains an answer that
    ignored a document, or a refusal with no citation."""
    return grounding.fields() if grounding is not None else {}


async def completion_chunks(tracked: TrackedGeneration, chunks: ChunkFactory, grounding: Optional[Grounding] = None) -> AsyncIterator[bytes]:
    yield sse_data(chunks.chunk({"role": "assistant", "content": ""}))
    # An error event makes the openai client raise APIError.
    async for event in tracked.framed(lambda piece: sse_data(chunks.chunk({"content": piece}))):
        yield event
    if tracked.failed:
        return
    result = tracked.result
    last = {**chunks.chunk({}, result.finish_reason), **_citations(grounding)}
    last["choices"][0].update(repetition_fields(result))
    yield sse_data(last)
    if chunks.include_usage:
        yield sse_data(chunks.usage_chunk(result))
    yield SSE_DONE


def repetition_fields(result: GenerationResult) -> dict[str, Any]:
    """The last chunk of a stream the loop guard ended (``native_finish_reason: "repetition"``)
    also says how much of the streamed text is the reply: its repeated copies were already sent."""
    return {"text_length": result.text_length} if result.text_length is not None else {}

def model_card(engine: EngineDep) -> dict[str, Any]:
    return {"id": engine.model_name, "object": "model", "created": 0, "owned_by": "xiaoq"}


@router.get("/models")
async def list_models(engine: EngineDep) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(engine)]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, engine: EngineDep) -> dict[str, Any]:
    if model_id != engine.model_name:
        raise NotFound(f"The model '{model_id}' does not exist; this server serves '{engine.model_name}'.")
    return model_card(engine)
