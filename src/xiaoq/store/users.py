"""Users, groups, login sessions and per-user API keys: the :class:`UserStore` repository.

Secrets never reach the database in the clear: passwords arrive hashed (``auth/passwords.py``),
session tokens and API keys as SHA-256 digests (both are 256 random bits, so a fast digest is
enough: there is nothing to guess). Every method blocks; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from xiaoq.auth.types import User
from xiaoq.errors import Conflict, NotFound
from xiaoq.store.conversations import utc_now


def _integrity_error(exc: BaseException) -> bool:
    """A UNIQUE violation from either database (sqlite3 or psycopg)."""
    return type(exc).__name__ in ("IntegrityError", "UniqueViolation")


class UserStore:
    """Accounts over the conversations' database (:class:`~xiaoq.store.db.Database` or PgDatabase)."""

    def __init__(self, db: Any):
        self.db = db

    # ---- users -------------------------------------------------------------------------------
    def add_user(self, username: str, password_hash: Optional[str], role: str = "user", groups: Iterable[str] = ()) -> User:
        """Create a user; :class:`Conflict` when the name is taken (whatever its case). The first
        admin receives every conversation and knowledge base stored before accounts existed."""
        try:
            with self.db.write() as conn:
                first_admin = role == "admin" and conn.execute("SELECT 1 FROM users WHERE role = 'admin'").fetchone() is None
                cur = conn.execute(
                    "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                    (username, password_hash, role, utc_now()),
                )
                uid = int(cur.fetchone()[0])
                self._set_groups(conn, uid, groups)
                if first_admin:
                    self._claim(conn, uid)
        except Exception as exc:
            if _integrity_error(exc):
                raise Conflict(f"A user named {username!r} already exists.", code="user_exists") from None
            raise
        return self.get_user(uid)

    def get_user(self, user_id: int) -> User:
        row = self.db.query_one("SELECT id, username, role FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"No user with id {user_id}", code="user_not_found")
        return self._user(row)

    def find(self, username: str) -> Optional[tuple[User, Optional[str]]]:
        """The user of that name (any case) and its password hash, or None."""
        row = self.db.query_one("SELECT id, username, role, password_hash FROM users WHERE lower(username) = lower(?)", (username,))
        return None if row is None else (self._user(row), row["password_hash"])

    def by_name(self, username: str) -> User:
        found = self.find(username)
        if found is None:
            raise NotFound(f"No user named {username!r}", code="user_not_found")
        return found[0]

    def list_users(self) -> list[User]:
        return [self._user(r) for r in self.db.query("SELECT id, username, role FROM users ORDER BY id")]

    def count(self) -> int:
        return int(self.db.query_one("SELECT count(*) FROM users")[0])

    def update_user(self, user_id: int, *, password_hash: Optional[str] = None, role: Optional[str] = None, groups: Optional[Iterable[str]] = None) -> User:
        """Change what is given; a new password ends the user's sessions (a stolen cookie stops)."""
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                raise NotFound(f"No user with id {user_id}", code="user_not_found")
            if password_hash is not None:
                conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            if role is not None:
                conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
            if groups is not None:
                conn.execute("DELETE FROM user_groups WHERE user_id = ?", (user_id,))
                self._set_groups(conn, user_id, groups)
        return self.get_user(user_id)

    def remove_user(self, user_id: int) -> None:
        """Delete the user with its sessions, keys and conversations (ON DELETE CASCADE); its
        knowledge bases stay, owned by nobody (an admin manages them)."""
        with self.db.write() as conn:
            if conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
                raise NotFound(f"No user with id {user_id}", code="user_not_found")

    def first_admin(self) -> Optional[User]:
        row = self.db.query_one("SELECT id, username, role FROM users WHERE role = 'admin' ORDER BY id LIMIT 1")
        return None if row is None else self._user(row)

    def claim_unowned(self, user_id: int) -> int:
        """Give every conversation, knowledge base and (not built-in) preset without an owner to
        this user; how many conversations."""
        with self.db.write() as conn:
            return self._claim(conn, user_id)

    @staticmethod
    def _claim(conn: Any, user_id: int) -> int:
        n = conn.execute("UPDATE conversations SET owner_id = ? WHERE owner_id IS NULL", (user_id,)).rowcount
        conn.execute("UPDATE knowledge_bases SET owner_id = ? WHERE owner_id IS NULL", (user_id,))
        conn.execute("UPDATE presets SET owner_id = ? WHERE owner_id IS NULL AND builtin IS NULL", (user_id,))
        return int(n)

    @staticmethod
    def _set_groups(conn: Any, user_id: int, groups: Iterable[str]) -> None:
        for name in sorted(set(groups)):
            conn.execute("INSERT INTO user_groups (user_id, group_name) VALUES (?, ?)", (user_id, name))

    def _user(self, row: Any) -> User:
        groups = self.db.query("SELECT group_name FROM user_groups WHERE user_id = ? ORDER BY group_name", (row["id"],))
        return User(id=int(row["id"]), username=row["username"], role=row["role"], groups=tuple(g[0] for g in groups))

    # ---- sessions ----------------------------------------------------------------------------
    def add_session(self, user_id: int, token_hash: str, expires_at: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (utc_now(),))
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, user_id, utc_now(), expires_at),
            )

    def session_user(self, token_hash: str, now: str) -> Optional[User]:
        row = self.db.query_one(
            "SELECT u.id, u.username, u.role FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.expires_at > ?",
            (token_hash, now),
        )
        return None if row is None else self._user(row)

    def delete_session(self, token_hash: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    # ---- API keys ----------------------------------------------------------------------------
    def add_key(self, user_id: int, name: str, prefix: str, key_hash: str) -> dict[str, Any]:
        with self.db.write() as conn:
            cur = conn.execute(
                "INSERT INTO api_keys (user_id, name, prefix, key_hash, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (user_id, name, prefix, key_hash, utc_now()),
            )
            kid = int(cur.fetchone()[0])
        return next(k for k in self.list_keys(user_id) if k["id"] == kid)

    def list_keys(self, user_id: int) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT id, name, prefix, created_at, last_used_at FROM api_keys WHERE user_id = ? ORDER BY id", (user_id,))
        return [{k: r[k] for k in ("id", "name", "prefix", "created_at", "last_used_at")} for r in rows]

    def revoke_key(self, user_id: int, key_id: int) -> None:
        """Delete one of this user's keys; another user's key id is :class:`NotFound` like a made-up one."""
        with self.db.write() as conn:
            if conn.execute("DELETE FROM api_keys WHERE id = ? AND user_id = ?", (key_id, user_id)).rowcount == 0:
                raise NotFound(f"No API key with id {key_id}", code="key_not_found")

    def key_user(self, key_hash: str) -> Optional[User]:
        row = self.db.query_one("SELECT u.id, u.username, u.role FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?", (key_hash,))
        return None if row is None else self._user(row)

    def touch_key(self, key_hash: str, now: str) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE api_keys SET last_used_at = ? WHERE key_hash = ?", (now, key_hash))
