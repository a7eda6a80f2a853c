"""Each stored message is counted once: the budget reuses the stored count on every later turn.

Before every reply the context budget counts the conversation's past turns. Without stored
counts each past message was tokenized again several times per turn (per-turn costs, then the
exact counts of the chosen prompt), so a long conversation cost more and more per reply.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.api.helpers import make_settings
from xiaoq.chat.conversation import ConversationService
from xiaoq.engine.context import LlamaModel
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.store import Store

FIRST = "第一个问题：请记住我的名字是王小明。"


async def _turn(service: ConversationService, cid: str, text: str) -> dict:
    turn = await service.send(cid, text)
    last: dict = {}
    async for event in turn.events():
        last = event
    assert last.get("done") is True, last
    return last


async def test_a_stored_message_is_tokenized_once_per_reply_not_per_count(tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(ctx=4096, parallel=1, threads=1, kv_cache_mb=0, default_max_tokens=8, system_prompt="SYS")
    engine = LlamaEngine(tiny_gguf, settings)
    await engine.start()
    store = Store(tmp_path / "counts.db")
    seen: Counter[str] = Counter()
    tokenize = LlamaModel.tokenize

    def counting(self: LlamaModel, text: str, **kw):  # type: ignore[no-untyped-def]
        seen[text] += 1
        return tokenize(self, text, **kw)

    monkeypatch.setattr(LlamaModel, "tokenize", counting)
    try:
        service = ConversationService(store, engine, settings)
        cid = store.create_conversation()["id"]
        await _turn(service, cid, FIRST)
        for i in range(4):
            await _turn(service, cid, f"接着说第{i}件事。")
        before = seen[FIRST]
        done = await _turn(service, cid, "最后一个问题。")
        assert done["budget"]["turns_kept"] == 5  # FIRST is still in the prompt
        # Once, to build the prompt's token ids; its count for the budget came from the store.
        assert seen[FIRST] - before == 1, f"tokenized {seen[FIRST] - before} times in one reply"
    finally:
        await engine.close()
        store.close()


def test_counts_are_kept_per_tokenizer_and_forgotten_when_the_content_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    try:
        cid = store.create_conversation()["id"]
        a = store.add_message(cid, "user", "hello")
        b = store.add_message(cid, "assistant", "hi there")
        store.set_token_counts("tok-A", [(a["id"], "hello", 1), (b["id"], "hi there", 2)])
        assert store.token_counts(cid, "tok-A") == {a["id"]: 1, b["id"]: 2}
        assert store.token_counts(cid, "tok-B") == {}  # another model's tokenizer counts differently
        store.update_message(b["id"], content="something else")
        assert store.token_counts(cid, "tok-A") == {a["id"]: 1}
        store.set_token_counts("tok-A", [(b["id"], "hi there", 2)])  # counted before the edit: stale
        assert store.token_counts(cid, "tok-A") == {a["id"]: 1}
        store.update_message(a["id"], status="complete")  # no content change: the count stays
        assert store.token_counts(cid, "tok-A") == {a["id"]: 1}
    finally:
        store.close()
