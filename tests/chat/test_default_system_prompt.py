"""The default system prompt: a 0.5B model copies what it sees, so the prompt must not show it a
code fence (with ```python in it the model wrapped emails and poems in ```python blocks, measured by
eval/quality.py), and it states the language rule in both languages."""

from __future__ import annotations

from xiaoq.config import DEFAULT_SYSTEM_PROMPT


def test_no_code_fence_to_imitate() -> None:
    assert "```" not in DEFAULT_SYSTEM_PROMPT and "~~~" not in DEFAULT_SYSTEM_PROMPT
    assert "python" not in DEFAULT_SYSTEM_PROMPT.lower()


def test_language_and_code_block_rules_in_chinese_and_english() -> None:
    zh, en = DEFAULT_SYSTEM_PROMPT.split("\n", 1)
    assert "语言" in zh and "代码块" in zh
    assert "language" in en and "code block" in en


def test_xiaoq_default_comes_in_the_language_of_the_message_an_operator_prompt_as_it_is() -> None:
    from xiaoq.config import default_system_prompt

    zh, en = DEFAULT_SYSTEM_PROMPT.split("\n", 1)
    assert default_system_prompt(DEFAULT_SYSTEM_PROMPT, "帮我写一封请假邮件") == zh
    assert default_system_prompt(DEFAULT_SYSTEM_PROMPT, "Write a poem about rain.") == en
    assert default_system_prompt(DEFAULT_SYSTEM_PROMPT, "Translate into English: 我明天要去医院看牙医。") == en  # the target
    assert default_system_prompt("Be brief.", "帮我写一封请假邮件") == "Be brief."
    assert default_system_prompt("", "hi") == ""



def test_no_brevity_that_shrinks_lists_and_emails() -> None:
    """Under "concise" / "lists as plain text" lists came back as bare titles and emails as a request
    for details (eval/quality.py, length rows); each list item and email is asked for in full."""
    zh, en = DEFAULT_SYSTEM_PROMPT.split("\n", 1)
    assert "简洁" not in zh and "concise" not in en.lower() and "plain text" not in en
    assert "每一项" in zh and "each item" in en
    assert "完整" in zh and "in full" in en
