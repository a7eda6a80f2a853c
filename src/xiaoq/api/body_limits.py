"""What a request body may be, decided per route: its content type and its size.

Routes take JSON unless they declare themselves upload routes with ``openapi_extra=UPLOAD_BODY``
(documents, audio): those take ``multipart/form-data`` up to ``--max-upload-mb``, the rest
JSON up to ``--max-body-bytes``. The content type matters for safety, not only parsing: a browser
sends a cross-site form (``text/plain``, ``application/x-www-form-urlencoded``,
``multipart/form-data``) without asking first, so a state-changing JSON route refuses those types
even with an empty body. No ``Content-Type`` at all is accepted (curl without ``-d``).

The size is counted while the body streams in: a declared ``Content-Length`` over the limit is
refused before reading, and a chunked body is cut off at the first chunk past it (413), so a large
upload never sits in memory to be measured.

Why not FastAPI's own ``max_body_size``: a route's limit is fixed when the route is declared (at
import), while ours are settings known when the app is built; and the app-wide one answers in
FastAPI's ``{"detail"}`` shape, not ours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xiaoq.api.middleware import header, reject
from xiaoq.errors import PayloadTooLarge, UnsupportedMediaType, XiaoQError

#: ``@router.post(..., openapi_extra=UPLOAD_BODY)`` marks a multipart upload route.
UPLOAD_BODY: dict[str, Any] = {"x-xiaoq-body": "upload"}
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def flat_routes(routes: Sequence[BaseRoute]) -> list[Any]:
    """Every route, with included routers opened: recent FastAPI keeps an ``include_router`` as one
    entry of ``app.routes`` and lists its routes through ``iter_route_contexts``; older versions
    copy them into ``app.routes``. Each item has ``path``, ``methods``, ``matches`` and ``openapi_extra``."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return list(routes)
    return list(iter_route_contexts(routes))


def is_upload_route(routes: Sequence[BaseRoute], scope: Scope) -> bool:
    """True when the route this request reaches is marked with :data:`UPLOAD_BODY`."""
    for route in flat_routes(routes):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            extra = getattr(route, "openapi_extra", None) or {}
            return extra.get("x-xiaoq-body") == UPLOAD_BODY["x-xiaoq-body"]
    return False


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def accepts(upload: bool, media: str) -> bool:
    if upload:
        return media == "multipart/form-data"
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit. An ``HTTPException`` so that
    FastAPI's body parsing lets it through and the error handlers answer 413 in the JSON shape."""

    def __init__(self, limit: int):
        super().__init__(413, f"Request body is larger than the limit of {limit} bytes.", headers={"Connection": "close"})


class RequestBodyMiddleware:
    """415 for a body type the route does not take, 413 past the route's size limit."""

    def __init__(self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]], max_json_bytes: int, max_upload_bytes: int):
        self.app = app
        self.routes = routes
        self.max_json_bytes = max_json_bytes
        self.max_upload_bytes = max_upload_bytes

    def problem(self, scope: Scope, upload: bool, limit: int) -> Optional[XiaoQError]:
        content_type = header(scope, b"content-type")
        if scope["method"] in STATE_CHANGING and content_type is not None and not accepts(upload, media_type(content_type)):
            wanted = "multipart/form-data" if upload else "application/json"
            return UnsupportedMediaType(
                f"{scope['method']} {scope['path']} takes Content-Type: {wanted}, not {media_type(content_type) or 'an empty type'}."
            )
        declared = header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            return PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.", limit=limit, headers={"Connection": "close"})
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = is_upload_route(self.routes(), scope)
        limit = self.max_upload_bytes if upload else self.max_json_bytes
        problem = self.problem(scope, upload, limit)
        if problem is not None:
            await reject(problem, scope, receive, send)
            return
        await self.app(scope, counting(receive, limit), send)


def counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises :class:`BodyTooLarge` as soon as the body passes ``limit`` bytes;
    other messages (``http.disconnect`` for streaming responses) pass through untouched."""
    size = 0

    async def wrapped() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped
