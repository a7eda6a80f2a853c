"""The user a request acts for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["admin", "user"]
ROLES: tuple[str, ...] = ("admin", "user")


@dataclass(frozen=True)
class User:
    """An account. ``groups`` decide which shared knowledge bases it sees."""

    id: int
    username: str
    role: str = "user"
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, Any]:
        """What ``GET /api/auth/me`` and the admin list show (never a hash)."""
        return {"id": self.id, "username": self.username, "role": self.role, "groups": list(self.groups)}
