"""The accounts service: creating users, checking passwords, sessions and per-user API keys.

It decides policy (name rules, password rules, session length, the login throttle) and leaves SQL
to :class:`~xiaoq.store.users.UserStore`. Session tokens and API keys are 256 random bits handed
out once and stored only as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Optional

from xiaoq.auth.passwords import check_strength, hash_password, verify_password
from xiaoq.auth.throttle import LoginThrottle
from xiaoq.auth.types import ROLES, User
from xiaoq.errors import InvalidRequest, TooManyRequests, Unauthorized
from xiaoq.store.users import UserStore

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_PREFIX = "xq_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_username(name: str) -> str:
    if not isinstance(name, str) or not USERNAME.fullmatch(name):
        raise InvalidRequest("a username is 1-64 letters, digits or . _ @ + - (starting with a letter or digit)", code="invalid_username", param="username")
    return name


def check_groups(groups: Iterable[str]) -> list[str]:
    out = list(groups)
    for g in out:
        if not isinstance(g, str) or not GROUP.fullmatch(g):
            raise InvalidRequest(f"invalid group name {g!r}: letters, digits, . _ - (at most 64)", code="invalid_group", param="groups")
    return out


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {ROLES}", code="invalid_role", param="role")
    return role


def check_password(password: str) -> str:
    try:
        check_strength(password)
    except ValueError as e:
        raise InvalidRequest(str(e), code="weak_password", param="password") from None
    return password


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Accounts:
    """Users over one :class:`UserStore`. ``now`` (wall clock, for session expiry) is injectable."""

    def __init__(
        self,
        users: UserStore,
        *,
        session_hours: float = 24 * 7,
        throttle: Optional[LoginThrottle] = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.users = users
        self.session_hours = session_hours
        self.throttle = throttle or LoginThrottle()
        self.now = now

    # ---- managing users ----------------------------------------------------------------------
    def create(self, username: str, password: Optional[str], role: str = "user", groups: Iterable[str] = ()) -> User:
        """A new user; ``password`` None makes one that cannot log in with a password (SSO)."""
        check_username(username)
        check_role(role)
        pw_hash = hash_password(check_password(password)) if password is not None else None
        return self.users.add_user(username, pw_hash, role, check_groups(groups))

    def set_password(self, user: User, password: str) -> None:
        self.users.update_user(user.id, password_hash=hash_password(check_password(password)))

    # ---- logging in --------------------------------------------------------------------------
    def login(self, username: str, password: str, client: str = "") -> tuple[User, str]:
        """The user and a new session token, or :class:`Unauthorized` (the same answer for an
        unknown name and a wrong password) or :class:`TooManyRequests` while throttled."""
        keys = [f"user:{username.lower()}", f"addr:{client}"]
        wait = self.throttle.wait(keys)
        if wait > 0:
            raise TooManyRequests("Too many failed logins; wait before trying again.", wait, code="login_throttled")
        found = self.users.find(username) if USERNAME.fullmatch(username or "") else None
        if not verify_password(password, found[1] if found else None) or found is None:
            self.throttle.failed(keys)
            raise Unauthorized("Wrong username or password.", code="invalid_credentials")
        self.throttle.succeeded(keys[:1])
        token = secrets.token_urlsafe(32)
        self.users.add_session(found[0].id, digest(token), _iso(self.now() + timedelta(hours=self.session_hours)))
        return found[0], token

    def session(self, token: str) -> Optional[User]:
        return self.users.session_user(digest(token), _iso(self.now())) if token else None

    def logout(self, token: str) -> None:
        self.users.delete_session(digest(token))

    def header_user(self, username: str) -> Optional[User]:
        """The user a trusted proxy named, created on first sight (role ``user``); None when the
        name is not a valid username."""
        if not USERNAME.fullmatch(username or ""):
            return None
        found = self.users.find(username)
        if found is not None:
            return found[0]
        try:
            return self.users.add_user(username, None, "user")
        except Exception:  # created by a concurrent request a moment ago
            found = self.users.find(username)
            return found[0] if found else None

    # ---- API keys ----------------------------------------------------------------------------
    def new_key(self, user: User, name: str = "") -> tuple[dict[str, Any], str]:
        """A new key for ``user``: its record and the key itself (shown once, never again)."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = self.users.add_key(user.id, name[:100], key[:10], digest(key))
        return record, key

    def key_user(self, key: str) -> Optional[User]:
        return self.users.key_user(digest(key)) if key.startswith(KEY_PREFIX) else None

