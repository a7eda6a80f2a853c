"""PresetStore on both databases: built-ins seeded once (edits survive a restart), CRUD, reset,
built-ins cannot be deleted, the language filter, and the owner/visibility columns accounts need."""

from __future__ import annotations

import pytest

from xiaoq.chat.presets import BUILTINS
from xiaoq.errors import InvalidRequest, NotFound
from xiaoq.store import open_store
from xiaoq.store.presets import PresetStore


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    return tmp_path / "p.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_builtins_seeded_once_edits_survive_and_reset_restores(where) -> None:
    store = open_store(where)
    presets = PresetStore(store.db)
    presets.ensure_builtins(BUILTINS)
    listed = presets.list()
    assert [p["id"] for p in listed] == [b["builtin"] for b in BUILTINS]
    assert all(p["owner_id"] is None and p["visibility"] == "shared" for p in listed)
    tutor = presets.get("tutor-zh")
    assert tutor["name"] == "编程导师" and tutor["builtin"] == "tutor-zh" and tutor["language"] == "zh"
    presets.update("tutor-zh", {"system_prompt": "只用三句话。", "settings": {"temperature": 0.1}})
    store.close()
    store = open_store(where)  # a restart seeds again: the edit stays
    presets = PresetStore(store.db)
    presets.ensure_builtins(BUILTINS)
    assert len(presets.list()) == len(BUILTINS)
    edited = presets.get("tutor-zh")
    assert (edited["system_prompt"], edited["settings"]) == ("只用三句话。", {"temperature": 0.1})
    back = presets.reset("tutor-zh", BUILTINS)
    shipped = next(b for b in BUILTINS if b["builtin"] == "tutor-zh")
    assert (back["system_prompt"], back["settings"], back["name"]) == (shipped["system_prompt"], {}, "编程导师")
    with pytest.raises(InvalidRequest):
        presets.delete("tutor-zh")
    store.close()


def test_user_presets_crud_and_language_filter(where) -> None:
    store = open_store(where)
    presets = PresetStore(store.db)
    presets.ensure_builtins(BUILTINS)
    mine = presets.create({"name": "周报助手", "system_prompt": "写周报。", "settings": {"max_tokens": 300}, "visibility": "private"})
    assert mine["builtin"] is None and mine["language"] is None and mine["visibility"] == "private"
    assert presets.list()[-1]["id"] == mine["id"]  # after the built-ins
    zh = presets.list("zh")
    assert {p["language"] for p in zh} == {"zh", None} and mine["id"] in {p["id"] for p in zh}
    assert presets.update(mine["id"], {"system_prompt": None})["system_prompt"] is None
    with pytest.raises(InvalidRequest):
        presets.reset(mine["id"], BUILTINS)
    presets.delete(mine["id"])
    with pytest.raises(NotFound):
        presets.get(mine["id"])
    store.close()
