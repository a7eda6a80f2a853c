"""LlamaEngine with the real Qwen2.5 GGUF (``XIAOQ_TEST_MODEL``): Chinese streams clean and generation
ends at ``<|im_end|>`` without leaking it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xiaoq.config import Settings
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import GenerationRequest, SamplingParams

pytestmark = pytest.mark.real_model

CJK = re.compile(r"[\u4e00-\u9fff]")


async def test_chinese_question_streams_clean_chinese_and_stops_at_im_end(real_model_path: Path):
    e = LlamaEngine(real_model_path, Settings(threads=2, parallel=2, ctx=2048))
    await e.start()
    try:
        g = await e.submit(
            GenerationRequest(
                messages=[{"role": "user", "content": "用一句话介绍一下北京。"}],
                sampling=SamplingParams(temperature=0, max_tokens=200),
            )
        )
        pieces = [p async for p in g]
        text = "".join(pieces)
        r = g.result
        assert r is not None
        assert r.finish_reason == "stop", text  # the model ended its turn with <|im_end|>
        assert r.usage.completion_tokens < 200
        assert len(CJK.findall(text)) >= 5, text
        assert all("\ufffd" not in p for p in pieces)
        assert "<|im_end|>" not in text and "<|im_start|>" not in text and "<|endoftext|>" not in text
        assert "北京" in text
    finally:
        await e.close()


async def test_follow_up_turn_reuses_cache_with_real_tokenizer(real_model_path: Path):
    e = LlamaEngine(real_model_path, Settings(threads=2, parallel=1, ctx=2048))
    await e.start()
    try:
        msgs = [{"role": "user", "content": "我叫李雷。请记住。"}]
        g1 = await e.submit(GenerationRequest(messages=msgs, sampling=SamplingParams(temperature=0, max_tokens=40)))
        reply = await g1.text()
        msgs += [{"role": "assistant", "content": reply}, {"role": "user", "content": "我叫什么名字？"}]
        g2 = await e.submit(GenerationRequest(messages=msgs, sampling=SamplingParams(temperature=0, max_tokens=30)))
        answer = await g2.text()
        r1, r2 = g1.result, g2.result
        assert r1 is not None and r2 is not None
        # the real model's replies re-tokenize to the same tokens: all of turn 1 is reused
        assert r2.usage.cached_tokens >= r1.usage.prompt_tokens + r1.usage.completion_tokens - 1
        assert r2.timings.prompt_tokens_evaluated == r2.usage.prompt_tokens - r2.usage.cached_tokens
        assert "李雷" in answer
    finally:
        await e.close()
