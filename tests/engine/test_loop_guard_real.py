"""The loop guard with the real Qwen2.5 model (``XIAOQ_TEST_MODEL``): an answer that repeats itself
ends with ``repetition`` long before max_tokens, and the text to keep holds one copy; an ordinary
answer is untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from xiaoq.config import Settings
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import GenerationRequest, SamplingParams

pytestmark = pytest.mark.real_model

LINE = "我们明天一起去公园散步。\n"
#: An answer that has already started repeating itself (a raw ChatML prompt ending inside the
#: assistant's turn): a model continues such a pattern, as it does once it has fallen into a loop.
LOOPING = f"<|im_start|>user\n明天做什么？<|im_end|>\n<|im_start|>assistant\n{LINE * 3}"


async def generate(e: LlamaEngine, prompt: str, **sampling) -> tuple[str, object]:
    sampling = SamplingParams(**{"temperature": 0.0, "max_tokens": 200, **sampling})
    raw = prompt.startswith("<|im_start|>")
    req = GenerationRequest(prompt=prompt, sampling=sampling) if raw else GenerationRequest(messages=[{"role": "user", "content": prompt}], sampling=sampling)
    g = await e.submit(req)
    text = "".join([p async for p in g])
    return text, g.result


async def test_a_repeating_answer_ends_with_repetition_and_one_copy(real_model_path: Path) -> None:
    e = LlamaEngine(real_model_path, Settings(threads=1, parallel=1, ctx=1024, kv_cache_mb=0))
    await e.start()
    try:
        text, r = await generate(e, LOOPING, loop_guard=True)
        assert r.finish_reason == "repetition", text
        assert r.usage.completion_tokens < 100  # three more copies make 40 repeated tokens
        assert text[: r.text_length] == LINE  # the reply so far, one copy: the rest repeated it
        text, r = await generate(e, LOOPING, loop_guard=False)
        assert r.finish_reason in ("length", "stop") and r.usage.completion_tokens > 60 and text.count(LINE) >= 5
        text, r = await generate(e, "用一句话介绍一下长城。", loop_guard=True)
        assert r.finish_reason == "stop" and r.text_length is None and "长城" in text, (r, text)
    finally:
        await e.close()


#: An answer already cycling through three to-do items under growing numbers: the model carries
#: the cycle on, and only the numbers tell the copies apart.
ITEMS = ["给阳台的花浇水", "把旧报纸送去回收", "给奶奶打个电话"]
CYCLING = "<|im_start|>user\n列一个周末待办清单<|im_end|>\n<|im_start|>assistant\n待办：\n" + "".join(
    f"{n}. {item}\n" for n, item in enumerate(ITEMS * 2, 1))


async def test_a_list_cycling_under_growing_numbers_ends_with_repetition(real_model_path: Path) -> None:
    e = LlamaEngine(real_model_path, Settings(threads=1, parallel=1, ctx=1024, kv_cache_mb=0))
    await e.start()
    try:
        text, r = await generate(e, CYCLING, loop_guard=True, max_tokens=300)
        assert r.finish_reason == "repetition", text
        assert r.usage.completion_tokens < 150, r.usage
        # the guard sees the reply, not the prompt: of what the model added, one cycle stays
        assert text[: r.text_length].rstrip() == "".join(f"{n}. {item}\n" for n, item in enumerate(ITEMS, 7)).rstrip(), text
    finally:
        await e.close()
