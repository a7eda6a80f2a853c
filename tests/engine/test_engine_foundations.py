"""The engine protocol's foundations: counts off the event loop and reused, continuing the last
assistant message, and finish reasons that can grow.

Each runs on the real llama.cpp engine over the tiny GGUF where the engine is involved, and on
the fake engine where the layers above it are.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import pytest

from tests.api.helpers import make_settings, parse_sse
from tests.tinymodel import IM_END_ID
from xiaoq.engine.fake import FakeEngine, FakeReply
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.template import CHATML_TEMPLATE, ChatTemplate
from xiaoq.engine.types import Engine, GenerationRequest, SamplingParams
from xiaoq.errors import InvalidRequest

HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name three colours."},
    {"role": "assistant", "content": "Red, green and"},
]


@asynccontextmanager
async def llama(tiny_gguf: Path) -> AsyncIterator[LlamaEngine]:
    e = LlamaEngine(tiny_gguf, make_settings(threads=1, parallel=1, ctx=1024, batch=64, kv_cache_mb=0))
    await e.start()
    try:
        yield e
    finally:
        await e.close()


# ---- continuing the last assistant message -----------------------------------------------------
@pytest.mark.parametrize("source", [None, CHATML_TEMPLATE])
def test_template_leaves_the_last_assistant_message_open(source) -> None:
    text = ChatTemplate(source).render(HISTORY, continue_last=True)
    assert text.endswith("<|im_start|>assistant\nRed, green and")
    assert text.count("<|im_end|>") == 2  # system and user closed, the assistant's turn open


def test_continue_needs_an_assistant_message_last() -> None:
    with pytest.raises(InvalidRequest) as e:
        ChatTemplate(None).render(HISTORY[:2], continue_last=True)
    assert e.value.code == "nothing_to_continue"


async def test_llama_engine_continues_the_assistant_message(tiny_gguf: Path) -> None:
    async with llama(tiny_gguf) as e:
        prompt = e.render(HISTORY, continue_last=True)  # the GGUF's own (Qwen2.5) template
        assert prompt.endswith("<|im_start|>assistant\nRed, green and")
        assert not prompt.rstrip().endswith("<|im_end|>") and prompt.count("<|im_end|>") == 2
        closed = GenerationRequest(messages=HISTORY, sampling=SamplingParams(temperature=0, max_tokens=4))
        opened = GenerationRequest(messages=HISTORY, sampling=SamplingParams(temperature=0, max_tokens=4), continue_last=True)
        tokens_closed, tokens_open = e._prompt_tokens(closed), e._prompt_tokens(opened)
        # The open prompt is the closed one up to its "<|im_end|>\n<|im_start|>assistant\n".
        assert tokens_open == tokens_closed[: len(tokens_open)]
        assert tokens_closed[len(tokens_open)] == IM_END_ID and len(tokens_closed) > len(tokens_open) + 3
        gen = await e.submit(opened)
        await gen.text()
        assert gen.result is not None and gen.result.finish_reason == "length"
        assert gen.result.usage.prompt_tokens == len(tokens_open)


async def test_fake_engine_continues_the_assistant_message() -> None:
    e = FakeEngine(make_settings(), replies=["blue."])
    await e.start()
    gen = await e.submit(GenerationRequest(messages=HISTORY, continue_last=True))
    assert await gen.text() == "blue."
    assert gen.prompt_tokens == len(e.render(HISTORY, continue_last=True)) == len(e.render(HISTORY)) - 13


# ---- counting -------------------------------------------------------------------------------
async def test_known_content_counts_stand_for_the_contents(tiny_gguf: Path) -> None:
    async with llama(tiny_gguf) as e:
        counted = [{**m, "tokens": len(e.tokenize(m["content"]))} for m in HISTORY]
        exact = len(e._prompt_tokens(GenerationRequest(messages=HISTORY)))
        assert e.count_prompt_tokens(HISTORY) == exact
        assert await e.acount_prompt_tokens(counted) == exact
        # The count is taken as given, not recomputed (a stored count is trusted).
        assert e.count_prompt_tokens([{**counted[1], "tokens": 1000}]) == e.count_prompt_tokens([counted[1]]) + 1000 - counted[1]["tokens"]


async def test_count_and_submit_refuse_after_close(tiny_gguf: Path) -> None:
    from xiaoq.errors import ModelLoading

    async with llama(tiny_gguf) as e:
        pass
    with pytest.raises(ModelLoading):
        await e.acount_prompt_tokens(HISTORY)
    with pytest.raises(ModelLoading):
        await e.submit(GenerationRequest(messages=HISTORY[:2]))


def test_both_engines_implement_the_protocol(tiny_gguf: Path) -> None:
    assert isinstance(FakeEngine(make_settings()), Engine)
    assert isinstance(LlamaEngine(tiny_gguf, make_settings()), Engine)


# ---- finish reasons are an open set --------------------------------------------------------------
def _app_with_reason(reason: str):  # type: ignore[no-untyped-def]
    from xiaoq.api.app import create_app

    settings = make_settings()
    engine = FakeEngine(settings, replies=[FakeReply("la la la", finish_reason=reason)] * 4)
    return create_app(settings, engine, web_dir=None)


def test_unknown_finish_reason_passes_through_chat_and_maps_to_stop_on_openai() -> None:
    from fastapi.testclient import TestClient

    from tests.api.helpers import wait_ready

    with TestClient(_app_with_reason("repetition")) as c:
        wait_ready(c)
        done = parse_sse(c.post("/chat", json={"prompt": "sing"}).text)[-1]
        assert done["done"] is True and done["finish_reason"] == "repetition"
        body = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "sing"}]}).json()
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["choices"][0]["native_finish_reason"] == "repetition"
        chunks = parse_sse(c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "sing"}], "stream": True}).text)
        last = chunks[-2]["choices"][0]
        assert (last["finish_reason"], last["native_finish_reason"]) == ("stop", "repetition")
        assert 'finish_reason="repetition"' in c.get("/metrics").text


def test_standard_finish_reasons_have_no_native_field() -> None:
    from fastapi.testclient import TestClient

    from tests.api.helpers import wait_ready

    with TestClient(_app_with_reason("length")) as c:
        wait_ready(c)
        choice = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "sing"}]}).json()["choices"][0]
        assert choice["finish_reason"] == "length" and "native_finish_reason" not in choice
