"""The loop guard in stored conversations (fake engine running the real guard): the done event says
``repetition`` and how much of the streamed text to keep, the stored reply is already cut, and
``loop_guard: false`` (per message or in the conversation's settings) lets a reply repeat."""

from __future__ import annotations

from fastapi.testclient import TestClient

import pytest

from tests.api.test_conversations_api import build, client, engine, new_conv, send, store, text_of  # noqa: F401


@pytest.fixture
def app_engine(store):  # noqa: F811
    return build(store, loop_guard=True)

HEAD = "下面是答案。\n"
LINE = "这一行会一遍又一遍地出现在回答里。\n"
LOOPED = HEAD + LINE * 12


def test_a_looping_reply_is_stored_cut_and_the_done_event_says_how_much(client: TestClient, engine) -> None:
    cid = new_conv(client)["id"]
    engine.enqueue(LOOPED)
    events = send(client, cid, "问题")
    done = events[-1]
    assert done["finish_reason"] == "repetition"
    assert text_of(events)[: done["text_length"]] == HEAD + LINE
    stored = client.get(f"/api/conversations/{cid}").json()["messages"][-1]
    assert stored["content"] == HEAD + LINE and stored["status"] == "complete"
    assert engine.requests[-1].sampling.loop_guard is True


def test_loop_guard_can_be_switched_off_per_message_and_per_conversation(client: TestClient, engine) -> None:
    cid = new_conv(client)["id"]
    engine.enqueue(LOOPED)
    events = send(client, cid, "问题", loop_guard=False)
    assert events[-1]["finish_reason"] == "stop" and text_of(events) == LOOPED
    cid2 = new_conv(client, settings={"loop_guard": False})["id"]
    engine.enqueue(LOOPED)
    assert send(client, cid2, "问题")[-1]["finish_reason"] == "stop"
