"""The stored-conversations API (``docs/api.md`` "Conversations"): CRUD, turns streamed as SSE,
stop, export, search and input suggestions.

The routes only translate HTTP to :class:`~xiaoq.chat.conversation.ConversationService` calls and
frame its event dicts as SSE. A turn is *admitted* before the response starts, so a full queue is
a 503, a conversation already answering a 409, bad input a 4xx, all as JSON; only failures after
the first byte become an ``error`` event. The stream starts at once (a summary of earlier turns,
when one is due, is written inside it, announced by ``{"status": "summarizing"}``). Closing the stream cancels the generation and the reply
stays stored ``incomplete`` with what was sent.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, AsyncIterator, Literal, Optional
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from xiaoq.api.deps import ConversationsDep, DrainingDep, MetricsDep, SettingsDep, get_conversations
from xiaoq.api.errors import error_responses
from xiaoq.api.fields import Bool, Float, Int, Text
from xiaoq.api.metrics import Metrics
from xiaoq.api.sse import SSE_RESPONSE, EventStream, dumps, sse_data
from xiaoq.api.streaming import Draining, TrackedGeneration
from xiaoq.chat.conversation import ConversationService, SamplingOverrides
from xiaoq.chat.turn import ReplyTurn
from xiaoq.engine.types import Generation
from xiaoq.errors import InvalidRequest, ShuttingDown
from xiaoq.logsafe import log_prompt

router = APIRouter(tags=["conversations"], responses=error_responses(404, 409, 507))

ROUTE = "/api/conversations"
ConversationId = Annotated[str, Path(min_length=1, max_length=64)]
Seed = Annotated[Int, Field(ge=0, le=2**32 - 1)]


class SamplingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: Optional[Float] = Field(None, ge=0, le=2)
    top_p: Optional[Float] = Field(None, gt=0, le=1)
    max_tokens: Optional[Int] = Field(None, ge=1)
    seed: Optional[Seed] = None
    min_p: Optional[Float] = Field(None, ge=0, le=1)
    repeat_penalty: Optional[Float] = Field(None, gt=0, le=2)
    loop_guard: Optional[Bool] = None
    language_check: Optional[Bool] = None

    def overrides(self) -> SamplingOverrides:
        return SamplingOverrides(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=self.seed,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            loop_guard=self.loop_guard,
            language_check=self.language_check,
        )


class ConversationSettings(SamplingBody):
    """Per-conversation sampling defaults; unknown keys are kept for the UI's own use."""

    model_config = ConfigDict(extra="allow")


class MessageBody(SamplingBody):
    content: Text = Field(min_length=1, description="The user message")
    kb: Optional[str] = Field(None, max_length=64, description="Answer this turn from this knowledge base instead of the conversation's ('' for none)")


class ConversationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Optional[Text] = Field(None, max_length=200)
    system_prompt: Optional[Text] = Field(None, max_length=20_000)
    settings: Optional[ConversationSettings] = None
    kb: Optional[str] = Field(None, max_length=64, description="The knowledge base this conversation answers from ('' for none)")
    preset: Optional[Text] = Field(None, min_length=1, max_length=64, description="Copy this preset's prompt and settings (create only)")


def _settings_dict(s: Optional[ConversationSettings]) -> Optional[dict[str, Any]]:
    return None if s is None else s.model_dump(exclude_none=True)


# ---- conversations --------------------------------------------------------------------------------
@router.get(ROUTE)
async def list_conversations(
    service: ConversationsDep, limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Annotated[int, Query(ge=0)] = 0
) -> dict[str, Any]:
    return {"data": await service.list(limit, offset)}


@router.post(ROUTE, status_code=201)
async def create_conversation(service: ConversationsDep, body: Optional[ConversationBody] = None) -> dict[str, Any]:
    body = body or ConversationBody()
    return await service.create(body.title, body.system_prompt, _settings_dict(body.settings), kb=await service.check_kb(body.kb), preset=body.preset)


@router.get(ROUTE + "/{conversation_id}")
async def get_conversation(conversation_id: ConversationId, service: ConversationsDep) -> dict[str, Any]:
    return await service.get(conversation_id, messages=True)


@router.patch(ROUTE + "/{conversation_id}")
async def update_conversation(conversation_id: ConversationId, body: ConversationBody, service: ConversationsDep) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    given = body.model_fields_set
    if "preset" in given:
        raise InvalidRequest("A preset is chosen when a conversation is created.", code="invalid_field", param="preset")
    if "title" in given:
        fields["title"] = body.title or ""
    if "system_prompt" in given:
        fields["system_prompt"] = body.system_prompt  # null clears it (the server default applies)
    if "settings" in given:
        fields["settings"] = _settings_dict(body.settings) or {}
    if "kb" in given:
        fields["kb"] = await service.check_kb(body.kb)  # null or "" clears it
    return await service.update(conversation_id, **fields)


@router.delete(ROUTE + "/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: ConversationId, service: ConversationsDep) -> Response:
    await service.delete(conversation_id)
    return Response(status_code=204)


# ---- turns ----------------------------------------------------------------------------------------
def stream_turn(
    turn: ReplyTurn, metrics: Metrics, started: float, draining: Optional[Draining] = None, *, classic: bool = False, route: str = ROUTE
) -> EventStream:
    """The SSE response of an admitted turn: its events, the reply's metrics recorded once, and
    whatever way the stream ends (done, client gone, server stopping) the reply is settled. When
    the server stops, the reply is stored ``incomplete`` and the stream ends with
    ``server_shutting_down``. ``classic``: /chat's shapes only (no ``start`` or ``status`` events)."""
    tracked: list[TrackedGeneration] = []

    def track(generation: Generation) -> AsyncIterator[str]:
        tracked.append(TrackedGeneration(generation, metrics, route, started, draining))
        return tracked[-1].pieces()

    async def body() -> AsyncIterator[bytes]:
        async for event in turn.events(track):
            if classic and ("start" in event or "status" in event):
                continue
            if event.get("done") and any(t.shutting_down for t in tracked):
                event = {**ShuttingDown().to_dict(), "message_id": event.get("message_id")}
            yield sse_data(event)

    def on_close() -> None:
        for t in tracked:
            t.cancel()
        turn.close()

    return EventStream(body(), on_close=on_close)


@router.post(ROUTE + "/{conversation_id}/messages", response_class=EventStream, responses=SSE_RESPONSE)
async def send_message(
    conversation_id: ConversationId, body: MessageBody, service: ConversationsDep, metrics: MetricsDep, settings: SettingsDep, draining: DrainingDep
) -> EventStream:
    started = time.perf_counter()
    log_prompt(settings.log_prompts, ROUTE + "/{id}/messages", body.content)
    turn = await service.send(conversation_id, body.content, body.overrides(), kb=body.kb)
    return stream_turn(turn, metrics, started, draining)


@router.post(ROUTE + "/{conversation_id}/regenerate", response_class=EventStream, responses=SSE_RESPONSE)
async def regenerate(
    conversation_id: ConversationId, service: ConversationsDep, metrics: MetricsDep, draining: DrainingDep, body: Optional[SamplingBody] = None
) -> EventStream:
    started = time.perf_counter()
    turn = await service.regenerate(conversation_id, (body or SamplingBody()).overrides())
    return stream_turn(turn, metrics, started, draining)


@router.post(ROUTE + "/{conversation_id}/continue", response_class=EventStream, responses=SSE_RESPONSE)
async def continue_reply(
    conversation_id: ConversationId, service: ConversationsDep, metrics: MetricsDep, draining: DrainingDep, body: Optional[SamplingBody] = None
) -> EventStream:
    """The model goes on with the last reply where it stopped, appending to the same message."""
    started = time.perf_counter()
    turn = await service.continue_reply(conversation_id, (body or SamplingBody()).overrides())
    return stream_turn(turn, metrics, started, draining)


@router.post(
    ROUTE + "/{conversation_id}/messages/{message_id}/edit", response_class=EventStream, responses=SSE_RESPONSE
)
async def edit_message(
    conversation_id: ConversationId,
    message_id: int,
    body: MessageBody,
    service: ConversationsDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    draining: DrainingDep,
) -> EventStream:
    started = time.perf_counter()
    log_prompt(settings.log_prompts, ROUTE + "/{id}/messages/{id}/edit", body.content)
    turn = await service.edit(conversation_id, message_id, body.content, body.overrides(), kb=body.kb)
    return stream_turn(turn, metrics, started, draining)


@router.post(ROUTE + "/{conversation_id}/stop")
async def stop(conversation_id: ConversationId, service: ConversationsDep) -> dict[str, bool]:
    await service.get(conversation_id, messages=False)  # unknown id: 404
    return {"stopped": await service.stop(conversation_id)}


async def conversation_chat(request: Request, body: Any, metrics: Metrics) -> EventStream:
    """``POST /chat`` with a ``conversation_id``: the stored conversation supplies the history and
    system prompt and records the turn; the events keep /chat's classic shapes (no ``start``)."""
    if body.history or body.system is not None:
        raise InvalidRequest("'history' and 'system' cannot be combined with 'conversation_id': the stored conversation supplies them.")
    service: ConversationService = get_conversations(request)
    started = time.perf_counter()
    overrides = SamplingOverrides(
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_tokens,
        seed=body.seed,
        stop=body.stop,
        min_p=body.min_p,
        repeat_penalty=body.repeat_penalty,
        loop_guard=body.loop_guard,
        language_check=body.language_check,
    )
    turn = await service.send(body.conversation_id, body.prompt, overrides, kb=getattr(body, "kb", None))
    return stream_turn(turn, metrics, started, request.app.state.draining, classic=True, route="/chat")


# ---- export, search, suggestions --------------------------------------------------------------
@router.get(ROUTE + "/{conversation_id}/export")
async def export(conversation_id: ConversationId, service: ConversationsDep, format: Literal["md", "json"] = "md") -> Response:
    title = (await service.get(conversation_id, messages=False))["title"] or "xiaoq"
    data = await service.export(conversation_id, format)
    headers = {"Content-Disposition": attachment(f"xiaoq-{conversation_id[:8]}.{format}", f"{title}.{format}")}
    if format == "json":
        return Response(dumps(data), media_type="application/json", headers=headers)
    return Response(data, media_type="text/markdown; charset=utf-8", headers=headers)


def attachment(ascii_name: str, name: str) -> str:
    """``Content-Disposition`` naming the download after the conversation's title (RFC 6266: an
    ASCII ``filename`` for old clients, the UTF-8 ``filename*`` for the rest)."""
    safe = "".join(ch for ch in name if ch not in '\\/:*?"<>|\r\n\t').strip()[:80] or ascii_name
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(safe, safe='')}"


@router.get("/api/search")
async def search(service: ConversationsDep, q: Annotated[str, Query(max_length=500)], limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
    return {"data": await service.search(q, limit)}


@router.get("/api/suggestions")
async def suggestions(service: ConversationsDep, q: Annotated[str, Query(max_length=500)] = "") -> JSONResponse:
    return JSONResponse({"data": await service.suggestions(q, 8) if q.strip() else []})


__all__ = ["router", "stream_turn", "ConversationService"]
