"""The language check with the real Qwen2.5 model (``XIAOQ_TEST_MODEL``): translations into Chinese,
under XiaoQ's own line, end up as Chinese text with the check on. The model often keeps an English
term at the start of such a translation ("quarterly报告…"): that is a Chinese reply, and must not
cost a retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from xiaoq.chat import language_check
from xiaoq.chat.language import is_chinese
from xiaoq.config import DEFAULT_SYSTEM_PROMPT, Settings, default_system_prompt
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import ChatMessage, GenerationRequest, SamplingParams

pytestmark = pytest.mark.real_model

ASK = "Translate into Chinese:\n\nThe quarterly report is attached. Please review the figures and send your comments by Monday."


async def test_a_translation_into_chinese_comes_back_in_chinese(real_model_path: Path) -> None:
    e = LlamaEngine(real_model_path, Settings(threads=1, parallel=1, ctx=1024, kv_cache_mb=0))
    await e.start()
    try:
        messages = [ChatMessage(role="system", content=default_system_prompt(DEFAULT_SYSTEM_PROMPT, ASK)), ChatMessage(role="user", content=ASK)]
        retries = 0
        for seed in range(4):
            request = GenerationRequest(messages=messages, sampling=SamplingParams(seed=seed, max_tokens=80, language_check=True))
            gen = await language_check.submit(e, request)
            text = await gen.text()
            assert is_chinese(text), (seed, gen.result.language_retry, text)
            if gen.result.language_retry:
                retries += 1
        assert retries == 0  # every reply was Chinese from its first words: nothing to redo
    finally:
        await e.close()
