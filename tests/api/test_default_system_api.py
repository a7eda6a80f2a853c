"""XiaoQ's default system prompt reaches the model in the language of the message (its Chinese half
for a Chinese message, its English half otherwise) on /chat."""

from __future__ import annotations

from xiaoq.config import DEFAULT_SYSTEM_PROMPT


def test_chat_sends_the_matching_half(app_factory) -> None:
    from fastapi.testclient import TestClient

    from tests.api.helpers import wait_ready

    app, engine = app_factory(system_prompt=DEFAULT_SYSTEM_PROMPT)
    zh, en = DEFAULT_SYSTEM_PROMPT.split("\n", 1)
    with TestClient(app) as c:
        wait_ready(c)
        c.post("/chat", json={"prompt": "你好，介绍一下你自己"})
        assert engine.requests[-1].messages[0] == {"role": "system", "content": zh}
        c.post("/chat", json={"prompt": "Hello, who are you?"})
        assert engine.requests[-1].messages[0] == {"role": "system", "content": en}
