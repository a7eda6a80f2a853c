"""The loop guard with the real Qwen2.5 model (``XIAOQ_TEST_MODEL``): a prompt that makes it repeat
itself ends with ``repetition`` long before max_tokens, and the text to keep holds one copy; an
ordinary answer is untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from xiaoq.config import Settings
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import GenerationRequest, SamplingParams

pytestmark = pytest.mark.real_model

#: Greedy decoding of the 0.5B model answers this by counting 1..10 over and over (a cycle it cannot
#: leave), the kind of loop the guard is for.
LOOPS = "列出从1到100的所有整数，每个数字后面加上“号选手”，用逗号分隔。"


async def generate(e: LlamaEngine, prompt: str, **sampling) -> tuple[str, object]:
    req = GenerationRequest(messages=[{"role": "user", "content": prompt}], sampling=SamplingParams(**{"temperature": 0.0, "max_tokens": 200, **sampling}))
    g = e.submit(req)
    text = "".join([p async for p in g])
    return text, g.result


async def test_a_repeating_answer_ends_with_repetition_and_one_copy(real_model_path: Path) -> None:
    e = LlamaEngine(real_model_path, Settings(threads=1, parallel=1, ctx=1024, kv_cache_mb=0))
    await e.start()
    try:
        text, r = await generate(e, LOOPS, loop_guard=True)
        assert r.finish_reason == "repetition", text
        assert r.usage.completion_tokens < 200
        kept = text[: r.text_length]
        entries = [c for c in kept.replace("\n", "，").split("，") if "号选手" in c]
        assert len(entries) >= 5 and len(entries) == len(set(entries)), kept  # one copy of the cycle
        assert text.count(entries[0]) >= 3  # what was dropped repeated it
        text, r = await generate(e, "用一句话介绍一下长城。", loop_guard=True)
        assert r.finish_reason == "stop" and r.text_length is None and "长城" in text, (r, text)
    finally:
        await e.close()
