"""Which language a reply should be in: the one a message asks for (a translation's target), else
the message's own. XiaoQ's default system prompt comes in that language, because the 0.5B model
follows its system line's language over a request in the message ("Translate into Chinese: ..."
under the English line came back in English)."""

from __future__ import annotations

import pytest

from xiaoq.chat.language import reply_language
from xiaoq.config import DEFAULT_SYSTEM_PROMPT, default_system_prompt


@pytest.mark.parametrize(
    "message, expected",
    [
        ("Please put this into Chinese: the parcel arrives on Tuesday.", "zh"),
        ("Translate the note below to Mandarin. The gate code changed.", "zh"),
        ("Could you answer in simplified Chinese? Why is the sky blue?", "zh"),
        ("Translate into English: 会议室的投影仪坏了。", "en"),
        ("把这条通知译成英文：停车场周五关闭。", "en"),
        ("请用英语回答：光合作用是什么？", "en"),
        ("帮我把这句翻成中文：The gate code changed.", "zh"),
        ("把下面的英文翻译为汉语：Keep the door closed.", "zh"),
        ("请将以下内容翻译成英文", "en"),
        # no target named: the message's own language
        ("What is the Chinese zodiac sign for this year?", "en"),
        ("英文字母一共有多少个？", "zh"),
        ("Write a short poem about snow.", "en"),
        ("写一首关于雪的短诗。", "zh"),
    ],
)
def test_reply_language(message: str, expected: str) -> None:
    assert reply_language(message) == expected


def test_the_default_prompt_line_follows_the_requested_language() -> None:
    zh, en = DEFAULT_SYSTEM_PROMPT.split("\n", 1)
    assert default_system_prompt(DEFAULT_SYSTEM_PROMPT, "Please put this into Chinese: the parcel arrives on Tuesday.") == zh
    assert default_system_prompt(DEFAULT_SYSTEM_PROMPT, "把这条通知译成英文：停车场周五关闭。") == en
