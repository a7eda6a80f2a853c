"""The access log and request ids, as pure ASGI middleware (see :mod:`xiaoq.api.middleware` for why
not ``BaseHTTPMiddleware``: it would buffer streamed tokens and hide disconnects).

Every request gets an id: the client's ``X-Request-Id`` when it is sane (a load balancer's or a
client's own, so one id follows a request across systems), else a fresh random one. The id goes back
in the ``X-Request-Id`` response header, onto every log line written while the request runs (a
context variable, :data:`xiaoq.logs.request_id_var`), and into ``scope["state"]["request_id"]`` so
routes can pass it on (the upstream engine sends it to the generation server).

One access line is written when the response has been sent completely, so a streamed answer is
logged with its full duration, or when the client went away first. The query string is left out
unless prompts may be logged: ``/api/search?q=`` carries what a user typed.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Optional

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xiaoq.logs import request_id_var

log = logging.getLogger("xiaoq.access")

#: Paths that load balancers and Docker's HEALTHCHECK poll every few seconds: their successful
#: answers are logged at debug level so they do not drown the requests people make.
PROBES = frozenset({"/health", "/metrics"})

HEADER = b"x-request-id"
#: What an incoming id may look like: printable, no spaces or quotes, bounded length.
_SANE_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


def incoming_request_id(scope: Scope) -> Optional[str]:
    """The client's ``X-Request-Id`` if it is a sane token, else None."""
    for name, value in scope.get("headers", []):
        if name == HEADER:
            return value.decode("ascii") if _SANE_ID.fullmatch(value) else None
    return None


def new_request_id() -> str:
    """A random UUID: the form other servers expect of X-Request-Id (some reject anything else)."""
    return str(uuid.uuid4())


class AccessLogMiddleware:
    """Assigns request ids, returns them as ``X-Request-Id``, and writes one access line per request."""

    def __init__(self, app: ASGIApp, *, enabled: bool = True, log_query: bool = False):
        self.app = app
        self.enabled = enabled
        self.log_query = log_query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_request_id(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status, sent, finished = 0, 0, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent, finished
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode("ascii"))]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                finished = finished or not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.enabled:
                self._write(scope, status or 500, sent, time.perf_counter() - started, finished)
            request_id_var.reset(token)

    def _write(self, scope: Scope, status: int, sent: int, seconds: float, finished: bool) -> None:
        path = scope.get("path", "")
        if self.log_query and scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        client = scope.get("client") or ("-", 0)
        outcome = "" if finished else " (client went away)"
        level = logging.DEBUG if path in PROBES and status < 400 else logging.INFO
        log.log(
            level,
            '%s "%s %s" %d %dB %.1fms%s',
            client[0],
            scope.get("method", "-"),
            path,
            status,
            sent,
            seconds * 1000,
            outcome,
            extra={
                "client": client[0],
                "method": scope.get("method"),
                "path": path,
                "status": status,
                "bytes": sent,
                "duration_ms": round(seconds * 1000, 1),
                "completed": finished,
            },
        )
