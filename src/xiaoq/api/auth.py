"""Who is asking, for ``--auth accounts`` and ``--auth trusted-header NAME`` (the single-user
modes keep ``ApiKeyMiddleware``).

:class:`AccountsMiddleware` finds the user before any route runs and puts it in the scope
(``scope["xiaoq.user"]``), from, in this order: a per-user API key (``Authorization: Bearer
xq_…``), the proxy's user header when the peer is one of ``--trusted-proxies`` (from anyone else
the header is ignored), or the session cookie. Without a user only the public paths and the login
route answer; the rest is 401. A state change carried by the cookie must come with the page's own
``Origin`` (the browser guard already refused foreign ones; here a missing Origin is refused too,
since browsers always send it on such requests and only a forged request leaves it out).

Generation routes also pass the per-user limits (:class:`~xiaoq.auth.limits.UserLimits`) for as
long as their response runs. Pure ASGI, like the other guards (see ``api/middleware.py``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from http.cookies import SimpleCookie
from typing import Callable, Iterable, Optional

from starlette.types import ASGIApp, Receive, Scope, Send

from xiaoq.api.middleware import header, reject
from xiaoq.auth.accounts import Accounts
from xiaoq.auth.limits import UserLimits
from xiaoq.auth.types import User
from xiaoq.errors import Forbidden, Unauthorized, XiaoQError

log = logging.getLogger("xiaoq.api")

SESSION_COOKIE = "xiaoq_session"
#: Routes that answer without a user (the login itself; ``me`` says 401 so the page shows the form).
OPEN_PATHS = frozenset({"/api/auth/login"})
#: Routes that start a reply: they count against the user's streams and requests per minute.
GENERATION = re.compile(
    r"^/(chat|v1/chat/completions|v1/completions|api/conversations/[^/]+/(messages|regenerate|continue|messages/[^/]+/edit))$"
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_token(scope: Scope) -> Optional[str]:
    raw = header(scope, b"cookie")
    if not raw:
        return None
    try:
        morsel = SimpleCookie(raw).get(SESSION_COOKIE)
    except Exception:  # a malformed Cookie header is no session
        return None
    return morsel.value if morsel is not None else None


def bearer(scope: Scope) -> Optional[str]:
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class TrustedProxies:
    """The peers whose user header is believed."""

    def __init__(self, networks: Iterable[str]):
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __contains__(self, address: Optional[str]) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


class AccountsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        accounts: Accounts,
        limits: UserLimits,
        is_public: Callable[[str], bool],
        user_header: Optional[str] = None,
        trusted_proxies: Iterable[str] = (),
    ):
        self.app = app
        self.accounts, self.limits, self.is_public = accounts, limits, is_public
        self.user_header = user_header.lower().encode() if user_header else None
        self.proxies = TrustedProxies(trusted_proxies)

    async def identify(self, scope: Scope) -> tuple[Optional[User], str]:
        """The user and how they proved it (``key``, ``header``, ``cookie``), or (None, "")."""
        key = bearer(scope)
        if key:
            user = await asyncio.to_thread(self.accounts.key_user, key)
            if user is None:
                raise Unauthorized("Invalid API key: send 'Authorization: Bearer xq_…' with a key from /api/auth/keys.")
            return user, "key"
        if self.user_header is not None:
            name = header(scope, self.user_header)
            peer = (scope.get("client") or ("", 0))[0]
            if name and peer in self.proxies:
                return await asyncio.to_thread(self.accounts.header_user, name.strip()), "header"
            if name:
                log.debug("ignored %s header from untrusted address %s", self.user_header.decode(), peer)
        token = session_token(scope)
        if token:
            return await asyncio.to_thread(self.accounts.session, token), "cookie"
        return None, ""

    def _public(self, scope: Scope) -> bool:
        path = scope["path"]
        if scope["type"] != "http":
            return False
        return path in OPEN_PATHS or (scope["method"] in ("GET", "HEAD") and self.is_public(path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            user, how = await self.identify(scope)
            if user is None and not self._public(scope):
                raise Unauthorized("Log in first (POST /api/auth/login) or send a personal API key.", code="login_required")
            if how == "cookie" and scope.get("method", "GET") not in SAFE_METHODS and header(scope, b"origin") is None:
                raise Forbidden("A change made with the session cookie must come from XiaoQ's own page (no Origin header).", code="invalid_origin")
        except XiaoQError as problem:
            await self._refuse(problem, scope, receive, send)
            return
        scope["xiaoq.user"] = user
        if user is None or scope["type"] != "http" or scope["method"] != "POST" or not GENERATION.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            self.limits.acquire(user.id)
        except XiaoQError as problem:
            await reject(problem, scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limits.release(user.id)

    async def _refuse(self, problem: XiaoQError, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        extra = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
        await reject(problem, scope, receive, send, extra)


def request_user(scope: Scope) -> Optional[User]:
    """The user :class:`AccountsMiddleware` found (None in the single-user modes)."""
    return scope.get("xiaoq.user")
