"""Security middleware: the API key, and the helpers the other guards share.

Every guard is pure ASGI (not ``BaseHTTPMiddleware``): that one runs the app in a separate task and
buffers through a memory stream, which delays streamed tokens and hides ``http.disconnect`` from
the SSE response, breaking cancellation. The others: ``browser_guard.py`` (Host, Origin) and
``body_limits.py`` (content type and size per route).
"""

from __future__ import annotations

import hmac
from typing import Callable, Optional

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from xiaoq.errors import Unauthorized, XiaoQError


async def reject(exc: XiaoQError, scope: Scope, receive: Receive, send: Send, extra_headers: Optional[dict[str, str]] = None) -> None:
    """Answer with ``exc`` in the one JSON error shape, without calling the app."""
    headers = {**exc.headers, **(extra_headers or {})}
    await JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers or None)(scope, receive, send)


def header(scope: Scope, name: bytes) -> Optional[str]:
    """The first value of a request header (lower-case ``name``), decoded as Latin-1 like HTTP does."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class ApiKeyMiddleware:
    """Every HTTP route and WebSocket except the public ones needs ``Authorization: Bearer <key>``.
    Public means read-only: ``is_public(path)`` is asked for GET and HEAD only. The key travels in
    that one header; a key in another header or the query string counts as no key.

    The comparison is constant-time (``hmac.compare_digest`` on bytes) so response timing does not
    leak how much of a guessed key was right. With no key configured, it lets everything through.
    """

    def __init__(self, app: ASGIApp, api_key: Optional[str], is_public: Callable[[str], bool]):
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.is_public = is_public

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key or b"")
        return False

    def _public(self, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and self.is_public(scope["path"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.key is None or self._public(scope) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await reject(
            Unauthorized("Missing or invalid API key: send 'Authorization: Bearer <key>'."),
            scope,
            receive,
            send,
            {"WWW-Authenticate": "Bearer"},
        )
