"""``POST /chat``: the classic streaming contract.

Request ``{"prompt", "history": [{"user", "bot"}], "system"?, "max_tokens"?, "temperature"?,
"top_p"?, "min_p"?, "repeat_penalty"?, "frequency_penalty"?, "presence_penalty"?, "seed"?, "stop"?,
"loop_guard"?, "conversation_id"?}``; response ``text/event-stream`` of
``data: {"token": "..."}`` events, then ``data: {"done": true, "finish_reason", "usage", "timings"}``
(with ``finish_reason: "repetition"`` also ``"text_length"``: the reply is that many leading
characters of the streamed text, the rest repeated it),
or ``data: {"error": {...}}`` when generation fails after the stream started.

Unknown fields are refused (422): this contract is ours, and a misspelt ``"temprature"`` silently
ignored would be a worse surprise than an error naming it.
"""

from __future__ import annotations

from typing import Annotated, AsyncIterator, Optional

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

from xiaoq.api.deps import EngineDep, MetricsDep, SettingsDep, viewer_kbs
from xiaoq.api.errors import error_responses
from xiaoq.api.fields import Bool, Float, Int, Text
from xiaoq.api.sampling import MAX_STOP_LENGTH, MAX_STOP_SEQUENCES, generation_request
from xiaoq.api.sse import SSE_RESPONSE, EventStream, sse_data
from xiaoq.api.streaming import TrackedGeneration
from xiaoq.chat import policy
from xiaoq.chat.grounding import ground_messages
from xiaoq.chat.prompt import build_messages
from xiaoq.config import default_system_prompt
from xiaoq.kb.answer import Grounding
from xiaoq.logsafe import log_prompt

router = APIRouter(tags=["chat"], responses=error_responses(404, 409, 507))  # 404/409/507: with a conversation_id

_STOP_STRING = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_LENGTH}
StopString = Annotated[Text, StringConstraints(min_length=1, max_length=MAX_STOP_LENGTH)]
#: ``"stop": "x"`` or ``["x", "y"]``; one string is normalised to a list first (rather than a Union)
#: so a validation error names ``stop`` plainly instead of one message per union branch.
Stop = Annotated[
    list[StopString],
    BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
    Field(max_length=MAX_STOP_SEQUENCES),
    WithJsonSchema({"anyOf": [_STOP_STRING, {"type": "array", "items": _STOP_STRING, "maxItems": MAX_STOP_SEQUENCES}]}),
]
Seed = Annotated[Int, Field(ge=0, le=2**32 - 1)]


class HistoryTurn(BaseModel):
    """One past exchange; either side may be empty (e.g. a turn whose reply failed)."""

    model_config = ConfigDict(extra="forbid")
    user: Text = ""
    bot: Text = ""


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Text = Field(min_length=1, description="The new user message")
    history: list[HistoryTurn] = Field(default_factory=list, description="Earlier turns, oldest first")
    system: Optional[Text] = Field(None, description="System prompt replacing the server's default; \"\" for none")
    max_tokens: Optional[Int] = Field(None, ge=1, description="Reply length limit (capped by the server)")
    temperature: Optional[Float] = Field(None, ge=0, le=2)
    top_p: Optional[Float] = Field(None, gt=0, le=1)
    min_p: Optional[Float] = Field(None, ge=0, le=1, description="llama-server's min_p")
    repeat_penalty: Optional[Float] = Field(None, gt=0, le=2, description="llama-server's repeat_penalty (1: off)")
    frequency_penalty: Optional[Float] = Field(None, ge=-2, le=2)
    presence_penalty: Optional[Float] = Field(None, ge=-2, le=2)
    seed: Optional[Seed] = None
    stop: Optional[Stop] = None
    loop_guard: Optional[Bool] = Field(None, description="End a runaway repetition (default: the server's --loop-guard)")
    language_check: Optional[Bool] = Field(None, description="Regenerate once a reply that starts in the wrong language (default: the server's --language-check)")
    conversation_id: Optional[str] = Field(None, max_length=64, description="Use and record this stored conversation (its history and system prompt)")
    kb: Optional[str] = Field(None, max_length=64, description="Answer from this knowledge base, with citations")


def check_list_length(name: str, items: list, limit: int) -> None:
    """The configurable caps (``settings.max_messages``) as a 422 naming the field."""
    if len(items) > limit:
        raise RequestValidationError(
            [{"type": "too_long", "loc": ("body", name), "msg": f"List should have at most {limit} items, not {len(items)}", "input": None}]
        )


@router.post("/chat", response_class=EventStream, responses=SSE_RESPONSE)
async def chat(body: ChatBody, http: Request, engine: EngineDep, settings: SettingsDep, metrics: MetricsDep) -> EventStream:
    check_list_length("history", body.history, settings.max_messages)
    log_prompt(settings.log_prompts, "/chat", body.prompt)
    if body.conversation_id is not None:  # use and record a stored conversation
        from xiaoq.api.routes_conversations import conversation_chat

        return await conversation_chat(http, body, metrics)
    messages = build_messages(policy.system_prompt(settings, body.system, body.prompt), [t.model_dump() for t in body.history], body.prompt)
    grounding = None
    if body.kb is not None:
        messages, grounding = await ground_messages(viewer_kbs(http, http.app.state.kb), engine, body.kb, messages)
    request = await generation_request(
        settings,
        engine,
        messages,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_tokens,
        seed=body.seed,
        stop=body.stop,
        min_p=body.min_p,
        repeat_penalty=body.repeat_penalty,
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        loop_guard=body.loop_guard,
        language_check=body.language_check,
    )
    tracked = await TrackedGeneration.submit(engine, request, metrics, "/chat", http.app.state.draining, grounding)
    return EventStream(chat_events(tracked, grounding), on_close=tracked.cancel)


async def chat_events(tracked: TrackedGeneration, grounding: Optional[Grounding] = None) -> AsyncIterator[bytes]:
    """Token events, then the done event (or an error event)."""
    async for event in tracked.framed(lambda piece: sse_data({"token": piece})):
        yield event
    if tracked.failed:
        return
    result = tracked.result
    yield sse_data(
        {
            "done": True,
            "finish_reason": result.finish_reason,
            "usage": result.usage.to_openai(),
            "timings": result.timings.to_dict(result.usage.completion_tokens),
            **grounding_fields(grounding),
            # the loop guard: the reply is this much of what was sent
            **({"text_length": result.text_length} if result.text_length is not None else {}),
        }
    )


def grounding_fields(grounding: Optional[Grounding]) -> dict:
    """``citations`` and ``retrieved`` of a knowledge-base answer (nothing without one)."""
    return grounding.fields() if grounding is not None else {}
