"""Security middleware: API key and body size limit.

Both are pure ASGI (not ``BaseHTTPMiddleware``): that one runs the app in a separate task and
buffers through a memory stream, which delays streamed tokens and hides ``http.disconnect`` from
the SSE response, breaking cancellation.
"""

from __future__ import annotations

import hmac
from typing import Callable, Optional

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xiaoq.errors import PayloadTooLarge, Unauthorized, XiaoQError


async def _reject(exc: XiaoQError, scope: Scope, receive: Receive, send: Send, extra_headers: Optional[dict[str, str]] = None) -> None:
    headers = {**exc.headers, **(extra_headers or {})}
    await JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers or None)(scope, receive, send)


class ApiKeyMiddleware:
    """Every HTTP route except the public ones needs ``Authorization: Bearer <key>``.

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.key is None or self.is_public(scope["path"]) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        await _reject(
            Unauthorized("Missing or invalid API key: send 'Authorization: Bearer <key>'."),
            scope,
            receive,
            send,
            {"WWW-Authenticate": "Bearer"},
        )


class BodyLimitMiddleware:
    """Bodies over ``max_bytes`` get 413 before the app parses them.

    A declared ``Content-Length`` over the limit is refused without reading; otherwise the body is
    read here while counting (chunked uploads declare no length) and replayed to the app in one
    message. After the body, ``receive`` is the server's again, so ``http.disconnect`` still
    reaches streaming responses.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"Request body is larger than the limit of {self.max_bytes} bytes.", limit=self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await _reject(self._too_large(), scope, receive, send, {"Connection": "close"})
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away before sending the body
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _reject(self._too_large(), scope, receive, send, {"Connection": "close"})
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
