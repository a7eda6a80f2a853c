"""Server-Sent Events framing and a streaming response that notices disconnects promptly.

Why not plain ``StreamingResponse``: with ASGI spec >= 2.4 servers it stops listening for
``http.disconnect`` and only learns of a gone client when a write fails, i.e. when the next token
arrives; while a request waits in the queue or prefills, nobody would notice. :class:`EventStream`
always listens, cancels the body iterator at once (its ``finally`` runs ``generation.cancel()``),
and calls ``on_close`` in every case, even if the iterator never started.
"""

from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterable, Callable, Mapping, Optional, Union

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

log = logging.getLogger("xiaoq.api")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def dumps(obj: Any) -> str:
    """Compact JSON that keeps Chinese readable on the wire (``ensure_ascii=False``)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse_data(obj: Union[Mapping[str, Any], str]) -> bytes:
    """One ``data:`` event. JSON escapes newlines, so a payload is always one line."""
    payload = obj if isinstance(obj, str) else dumps(obj)
    return f"data: {payload}\n\n".encode("utf-8")


SSE_DONE = sse_data("[DONE]")

#: The OpenAPI entry of a streaming answer: each event is one ``data:`` line holding a JSON object
#: (or ``[DONE]`` on the OpenAI stream). Before OpenAPI 3.2 an event stream's ``schema`` describes
#: one event.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string", "description": "one JSON object, or [DONE]"}, "event": {"type": "string"}},
}
SSE_RESPONSE = {200: {"description": "Server-Sent Events", "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}}}


class EventStream(StreamingResponse):
    """``text/event-stream`` response: every chunk is sent as soon as it is yielded."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterable[bytes],
        *,
        on_close: Optional[Callable[[], None]] = None,
        headers: Optional[Mapping[str, str]] = None,
        status_code: int = 200,
    ):
        super().__init__(content, status_code=status_code, headers={**SSE_HEADERS, **(headers or {})}, media_type=self.media_type)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the socket broke during a write: same as a disconnect
                        pass
                    tg.cancel_scope.cancel()

                async def watch() -> None:
                    await self.listen_for_disconnect(receive)
                    tg.cancel_scope.cancel()

                tg.start_soon(stream)
                tg.start_soon(watch)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:  # runs the generator's finally if it was never started or left suspended
                with anyio.CancelScope(shield=True):
                    try:
                        await aclose()
                    except Exception:  # pragma: no cover - a broken generator must not mask the response
                        log.exception("closing an event stream failed")
            if self.on_close is not None:
                self.on_close()
