"""The language check with the real Qwen2.5 model (``XIAOQ_TEST_MODEL``): a request to translate an
English sentence into Chinese, under XiaoQ's own line, ends up as Chinese text with the check on,
whatever the first attempt began with (the 0.5B model sometimes copies the English source)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xiaoq.chat import language_check
from xiaoq.chat.language import is_chinese
from xiaoq.config import DEFAULT_SYSTEM_PROMPT, Settings, default_system_prompt
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import ChatMessage, GenerationRequest, SamplingParams

pytestmark = pytest.mark.real_model

ASK = "Translate into Chinese: Please remember to water the plants on the balcony while I am away."


async def test_a_translation_into_chinese_comes_back_in_chinese(real_model_path: Path) -> None:
    e = LlamaEngine(real_model_path, Settings(threads=1, parallel=1, ctx=1024, kv_cache_mb=0))
    await e.start()
    try:
        messages = [ChatMessage(role="system", content=default_system_prompt(DEFAULT_SYSTEM_PROMPT, ASK)), ChatMessage(role="user", content=ASK)]
        for seed in range(4):
            request = GenerationRequest(messages=messages, sampling=SamplingParams(seed=seed, max_tokens=80, language_check=True))
            gen = await language_check.submit(e, request)
            text = await gen.text()
            assert is_chinese(text), (seed, gen.result.language_retry, text)
    finally:
        await e.close()
