"""Accounts: who is asking. Passwords, login throttling, per-user limits and the :class:`User` the
routes and the store are scoped to. No HTTP here (``api/auth.py``) and no SQL (``store/users.py``)."""

from xiaoq.auth.types import User

__all__ = ["User"]
