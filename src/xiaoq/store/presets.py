"""Presets ("assistants"): the :class:`PresetStore` repository.

A preset is data a new conversation copies (system prompt and sampling settings); nothing links
the two afterwards, so editing a preset changes only conversations started later. Built-in
presets are rows like any other, seeded from the definitions the caller passes
(:mod:`xiaoq.chat.presets`) when missing, so a user's edits survive restarts and upgrades;
:meth:`PresetStore.reset` writes a built-in's shipped text back. Every method blocks.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any, Iterable, Optional

from xiaoq.errors import Forbidden, InvalidRequest, NotFound
from xiaoq.store.conversations import utc_now

_COLUMNS = "id, builtin, owner_id, visibility, group_name, language, name, description, system_prompt, settings, position, created_at, updated_at"
#: Who may use a preset: everyone (stored as ``shared``, the name the API has used since m007),
#: one group (``group_name``), or its owner alone.
VISIBILITIES = ("shared", "group", "private")
#: Columns a caller may set (the rest are the store's).
EDITABLE = ("visibility", "group_name", "language", "name", "description", "system_prompt", "settings")


def preset_dict(row: Any) -> dict[str, Any]:
    out = {k: row[k] for k in _COLUMNS.split(", ")}
    out["settings"] = json.loads(out["settings"] or "{}")
    return out


class PresetStore:
    """Presets over the conversations' database (SQLite or PostgreSQL: plain SQL only).

    With accounts, :meth:`for_viewer` gives one user's view: the built-ins and every ``shared``
    preset, those shared with one of their groups (``group``; an admin: with any group, as for
    knowledge bases), plus their own ``private`` ones (another user's private preset, or a group's
    preset for a non-member, is NotFound, like a made-up id). A preset they make is theirs
    (``owner_id``). Changing one is for its owner, or an admin for the built-ins, shared and group
    ones (403 otherwise). The store itself (no
    viewer) sees and changes everything: the single-user modes."""

    viewer: Any = None

    def __init__(self, db: Any):
        self.db = db

    def for_viewer(self, user: Any) -> "PresetStore":
        view = copy.copy(self)
        view.viewer = user
        return view

    def _visible(self) -> tuple[str, tuple[Any, ...]]:
        if self.viewer is None:
            return "", ()
        u = self.viewer
        return (
            " AND (visibility = 'shared' OR owner_id = ?"
            " OR (visibility = 'group' AND (? = 1 OR group_name IN (SELECT g.group_name FROM user_groups g WHERE g.user_id = ?))))",
            (u.id, int(u.is_admin), u.id),
        )

    def _check_may_change(self, preset: dict[str, Any]) -> None:
        u = self.viewer
        if u is None or preset["owner_id"] == u.id or (u.is_admin and (preset["owner_id"] is None or preset["visibility"] != "private")):
            return
        raise Forbidden("This preset is shared with you to use, not to change.", code="preset_read_only")

    def ensure_builtins(self, builtins: Iterable[dict[str, Any]]) -> None:
        """Insert each shipped preset that has no row yet; rows already there (maybe edited) stay."""
        now = utc_now()
        with self.db.write() as conn:
            for b in builtins:
                conn.execute(
                    f"INSERT INTO presets ({_COLUMNS}) VALUES (?, ?, NULL, 'shared', NULL, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (b["builtin"], b["builtin"], *_values(b), b.get("position", 0), now, now),
                )

    def list(self, language: Optional[str] = None) -> list[dict[str, Any]]:
        """Presets in display order; with ``language``, those in it and those for any language."""
        where, params = ("WHERE (language IS NULL OR language = ?)", (language,)) if language else ("WHERE 1 = 1", ())
        cond, own = self._visible()
        rows = self.db.query(f"SELECT {_COLUMNS} FROM presets {where}{cond} ORDER BY position, created_at, id", (*params, *own))
        return [preset_dict(r) for r in rows]

    def get(self, preset_id: str) -> dict[str, Any]:
        cond, own = self._visible()
        row = self.db.query_one(f"SELECT {_COLUMNS} FROM presets WHERE id = ?{cond}", (preset_id, *own))
        if row is None:
            raise NotFound(f"No preset with id {preset_id!r}", code="preset_not_found")
        return preset_dict(row)

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        pid, now = uuid.uuid4().hex, utc_now()
        visibility = fields.get("visibility") or ("private" if self.viewer is not None else "shared")
        _check_sharing(visibility, fields.get("group_name"))
        with self.db.write() as conn:
            last = conn.execute("SELECT COALESCE(MAX(position), 0) FROM presets").fetchone()[0]
            owner = self.viewer.id if self.viewer is not None else None
            conn.execute(
                f"INSERT INTO presets ({_COLUMNS}) VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (pid, owner, visibility, fields.get("group_name"), *_values(fields), int(last) + 1, now, now),
            )
        return self.get(pid)

    def update(self, preset_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Change the given :data:`EDITABLE` fields (``system_prompt`` None: the server's default)."""
        preset = self.get(preset_id)
        self._check_may_change(preset)
        if "visibility" in fields or "group_name" in fields:
            fields = dict(fields)
            fields["visibility"] = fields.get("visibility") or preset["visibility"]
            if fields.get("group_name") is None:  # not given: a group preset keeps its group
                fields["group_name"] = preset["group_name"] if fields["visibility"] == "group" else None
            _check_sharing(fields["visibility"], fields["group_name"])
        sets = [f"{k} = ?" for k in fields if k in EDITABLE]
        params = [json.dumps(v, ensure_ascii=False) if k == "settings" else v for k, v in fields.items() if k in EDITABLE]
        with self.db.write() as conn:
            conn.execute(f"UPDATE presets SET {', '.join([*sets, 'updated_at = ?'])} WHERE id = ?", (*params, utc_now(), preset_id))
        return self.get(preset_id)

    def reset(self, preset_id: str, builtins: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Write a built-in preset's shipped text and settings back over the user's edits."""
        preset = self.get(preset_id)
        self._check_may_change(preset)
        builtin = preset["builtin"]
        shipped = next((b for b in builtins if b["builtin"] == builtin), None)
        if shipped is None:
            raise InvalidRequest("Only a built-in preset can be reset.", code="not_a_builtin_preset")
        return self.update(preset_id, {k: shipped.get(k) for k in EDITABLE if k not in ("visibility", "group_name")})

    def delete(self, preset_id: str) -> None:
        preset = self.get(preset_id)
        self._check_may_change(preset)
        if preset["builtin"] is not None:
            raise InvalidRequest("A built-in preset cannot be deleted; edit it or reset it.", code="builtin_preset")
        with self.db.write() as conn:
            conn.execute("DELETE FROM presets WHERE id = ?", (preset_id,))


def _check_sharing(visibility: str, group: Optional[str]) -> None:
    if visibility not in VISIBILITIES or (visibility == "group") != bool(group):
        raise InvalidRequest("visibility is everyone (shared), private, or group with a group name", code="invalid_visibility", param="visibility")


def _values(p: dict[str, Any]) -> tuple[Any, ...]:
    """language, name, description, system_prompt, settings: in the order of :data:`_COLUMNS`."""
    settings = json.dumps(p.get("settings") or {}, ensure_ascii=False)
    return (p.get("language"), p["name"], p.get("description") or "", p.get("system_prompt"), settings)
