"""The browser's side door: DNS rebinding (``Host``) and cross-site requests (``Origin``).

An API key does not help here when none is set (the default on loopback), and a page the user
visits can make their browser send requests to 127.0.0.1. Two checks close that, before anything
else runs:

- ``Host`` must be an IP literal, ``localhost``/``*.localhost`` or an ``--allowed-hosts`` name,
  else 400 ``invalid_host`` (on every route: a rebound page must not even read ``/health``).
- A state-changing request (anything but GET/HEAD/OPTIONS, and every WebSocket) whose ``Origin``
  is not the request's own host:port nor an ``--allowed-origins`` entry is refused with 403, and so
  is ``Origin: null`` (sandboxed frames, ``file:`` pages). No ``Origin`` is allowed: curl and SDKs
  send none, and browsers always send it on cross-site POSTs, except that ``Sec-Fetch-Site`` then
  still says ``cross-site``.

Pure ASGI like the other middleware (see ``api/middleware.py`` for why).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from xiaoq.api.middleware import header, reject
from xiaoq.errors import Forbidden, InvalidHost, XiaoQError
from xiaoq.origins import HostPolicy, normalize_origin, same_origin

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class BrowserGuardMiddleware:
    """400 for an unknown ``Host``; 403 for a state change from a foreign ``Origin``."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()):
        self.app = app
        self.hosts = HostPolicy(allowed_hosts)
        self.origins = frozenset(normalize_origin(o) for o in allowed_origins)

    def origin_allowed(self, scope: Scope) -> bool:
        origin = header(scope, b"origin")
        if origin is None:
            return header(scope, b"sec-fetch-site") not in ("cross-site", "same-site")
        if same_origin(origin, header(scope, b"host")):
            return True
        try:
            return normalize_origin(origin) in self.origins
        except ValueError:  # "null" and anything else that is not an origin
            return False

    def refusal(self, scope: Scope) -> Optional[XiaoQError]:
        host = header(scope, b"host")
        if not self.hosts.allows(host):
            return InvalidHost(
                f"Host {host!r} is not served here: use the server's IP address or localhost, "
                "or add the name with --allowed-hosts (XIAOQ_ALLOWED_HOSTS)."
            )
        changes_state = scope["type"] == "websocket" or scope.get("method", "GET") not in SAFE_METHODS
        if changes_state and not self.origin_allowed(scope):
            origin = header(scope, b"origin") or "a cross-site page"
            return Forbidden(
                f"Requests from {origin} may not change anything here; "
                "list that origin with --allowed-origins (XIAOQ_ALLOWED_ORIGINS) if it should.",
                code="invalid_origin",
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self.refusal(scope)
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await reject(problem, scope, receive, send)


class ListedOriginsCORS:
    """Starlette's CORS for the ``--allowed-origins`` only. A request from any other origin never
    reaches it, so it gets no ``Access-Control-*`` header at all (Starlette's preflight answer
    lists the allowed methods even to an origin it refuses); ``*`` is never sent."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]):
        self.app = app
        self.origins = frozenset(normalize_origin(o) for o in allowed_origins)
        self.cors = CORSMiddleware(
            app,
            allow_origins=sorted(self.origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope, b"origin") if scope["type"] == "http" else None
        await (self.cors if origin in self.origins else self.app)(scope, receive, send)
