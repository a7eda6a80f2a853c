"""The HTTP API over the real Qwen2.5 GGUF (``XIAOQ_TEST_MODEL``): answers come from the history,
and Chinese streams clean through the official openai client."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from xiaoq.api.app import create_app
from xiaoq.config import DEFAULT_SYSTEM_PROMPT
from xiaoq.engine.llama_engine import LlamaEngine

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def real_server(real_model_path: Path) -> Iterator[str]:
    settings = make_settings(ctx=2048, parallel=1, queue=2, threads=2, kv_cache_mb=64, seed=1234, system_prompt=DEFAULT_SYSTEM_PROMPT)
    with serve(create_app(settings, LlamaEngine(real_model_path, settings), web_dir=None)) as url:
        wait_health(url, timeout=120)
        yield url


def test_chat_answers_from_a_two_turn_history(real_server: str) -> None:
    body = {
        "prompt": "我叫什么名字？我的猫叫什么？",
        "history": [
            {"user": "你好，我叫李雷，请记住我的名字。", "bot": "你好，李雷！我记住了。"},
            {"user": "我养了一只猫，它叫豆豆。", "bot": "豆豆真是个可爱的名字！"},
        ],
        "temperature": 0,
        "max_tokens": 64,
    }
    r = httpx.post(real_server + "/chat", json=body, timeout=300)
    assert r.status_code == 200
    events = parse_sse(r.text)
    answer = "".join(e["token"] for e in events[:-1])
    assert events[-1]["done"] is True and events[-1]["finish_reason"] in ("stop", "length")
    assert "李雷" in answer and "豆豆" in answer, answer
    assert "\ufffd" not in answer and "<|im_end|>" not in answer


def test_openai_client_streams_chinese_without_replacement_chars(real_server: str) -> None:
    client = openai.OpenAI(base_url=real_server + "/v1", api_key="unused", max_retries=0, timeout=300)
    stream = client.chat.completions.create(
        model="qwen2.5-0.5b-instruct",
        messages=[{"role": "user", "content": "用中文简单介绍一下长城。"}],
        max_tokens=80,
        temperature=0.7,
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces = []
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    text = "".join(pieces)
    assert len(pieces) > 5, "the answer should stream in many pieces"
    assert "\ufffd" not in text and all("\ufffd" not in p for p in pieces)
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) >= 10, text  # a Chinese answer
    assert "<|im_end|>" not in text and "<|im_start|>" not in text
    assert usage is not None and usage.completion_tokens > 5
