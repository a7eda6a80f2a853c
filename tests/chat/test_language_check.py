"""The first-tokens language check: the decision on held text, which requests it applies to, and
the relay over the fake engine (a wrong-language start is dropped and the steered retry is all the
consumer sees)."""

from __future__ import annotations

import asyncio

import pytest

from xiaoq.chat import language_check as lc
from xiaoq.config import DEFAULT_SYSTEM_PROMPT, Settings, default_system_prompt
from xiaoq.engine.fake import FakeEngine
from xiaoq.engine.types import ChatMessage, GenerationRequest, SamplingParams

ZH_Q = "请说说猫为什么喜欢晒太阳。"
EN_Q = "Why do cats like lying in the sun?"


def messages(question: str, system: str | None = None) -> list[ChatMessage]:
    line = default_system_prompt(DEFAULT_SYSTEM_PROMPT, question) if system is None else system
    return [ChatMessage(role="system", content=line), ChatMessage(role="user", content=question)]


# ---- the decision -----------------------------------------------------------------------------


def test_enough_han_decides_chinese() -> None:
    assert lc.verdict("猫喜欢温暖的", "zh", pieces=6) is lc.RELEASE
    assert lc.verdict("猫喜欢温暖的", "en", pieces=6) is lc.RETRY


def test_enough_latin_decides_english() -> None:
    assert lc.verdict("Cats enjoy warm places", "en", pieces=5) is lc.RELEASE
    assert lc.verdict("Cats enjoy warm places", "zh", pieces=5) is lc.RETRY


def test_few_letters_wait() -> None:
    assert lc.verdict("猫", "zh", pieces=1) is None
    assert lc.verdict("1. Cats", "zh", pieces=3) is None


def test_a_reply_starting_with_code_is_not_judged() -> None:
    assert lc.verdict("```python\nprint('hello there world')", "zh", pieces=9) is lc.RELEASE
    assert lc.verdict("  ```\nfor cat in cats: pass", "zh", pieces=9) is lc.RELEASE


def test_code_and_inline_code_do_not_count_as_prose() -> None:
    # without leaving the code out, its Latin letters would call these Chinese replies English
    assert lc.verdict("用 `sorted(items, key=len)`", "zh", pieces=10) is None
    assert lc.verdict("OK:\n```python\nwhile True: sleep_in_the_sun()\n```\n", "zh", pieces=20) is None


def test_a_reply_that_starts_with_a_word_of_the_other_language_is_not_wrong() -> None:
    # an English term first, then Chinese: a Chinese reply (no retry on the term alone)
    assert lc.verdict(" Kubernetes集", "zh", pieces=3) is None
    assert lc.verdict(" Kubernetes集群", "zh", pieces=4) is lc.RELEASE
    # a Chinese name first, then English: an English reply
    assert lc.verdict("北京 is the capital", "en", pieces=5) is lc.RELEASE


def test_a_bracketed_placeholder_is_not_prose() -> None:
    # an English email to a Chinese request opens with a Han placeholder: the brackets do not make it Chinese
    assert lc.verdict("Dear [某某],\n\nI am writing to", "zh", pieces=9) is lc.RETRY
    assert lc.verdict("Hello 【王经理】, thank you for", "zh", pieces=9) is lc.RETRY
    assert lc.verdict("Dear [张先", "zh", pieces=4) is None  # an open bracket: its text is still a placeholder
    # a Chinese reply keeps counting its prose beside a placeholder, and an English one its own
    assert lc.verdict("尊敬的[Name]：您好", "zh", pieces=6) is lc.RELEASE
    assert lc.verdict("[Your name] here, writing about", "en", pieces=6) is lc.RELEASE


def test_the_hold_is_bounded() -> None:
    assert lc.verdict("1. 2. 3. 4.", "zh", pieces=lc.MAX_HOLD_PIECES - 1) is None
    assert lc.verdict("1. 2. 3. 4.", "zh", pieces=lc.MAX_HOLD_PIECES) is lc.RELEASE


# ---- which requests are checked ---------------------------------------------------------------


def test_expected_language_only_under_xiaoq_s_own_line() -> None:
    assert lc.expected_language(messages(ZH_Q)) == "zh"
    assert lc.expected_language(messages(EN_Q)) == "en"
    assert lc.expected_language(messages(ZH_Q, system="You are a pirate.")) is None
    assert lc.expected_language([ChatMessage(role="user", content=ZH_Q)]) is None


def test_a_translation_expects_its_target() -> None:
    ask = "Translate into Chinese: The cat sleeps on the warm windowsill."
    assert lc.expected_language(messages(ask)) == "zh"


def test_steer_changes_only_the_system_line() -> None:
    request = GenerationRequest(messages=messages(EN_Q), sampling=SamplingParams(language_check=True))
    steered = lc.steered(request, "en")
    assert steered.messages[1:] == request.messages[1:]
    assert steered.messages[0]["content"].startswith(request.messages[0]["content"])
    assert steered.messages[0]["content"] != request.messages[0]["content"]
    assert request.messages[0]["content"] == default_system_prompt(DEFAULT_SYSTEM_PROMPT, EN_Q)  # not mutated


def test_the_setting_is_on_by_default() -> None:
    assert Settings.model_fields["language_check"].default is True


# ---- the relay over an engine -----------------------------------------------------------------


async def run(engine: FakeEngine, request: GenerationRequest) -> tuple[str, object]:
    gen = await lc.submit(engine, request)
    text = await gen.text()
    return text, gen.result


@pytest.fixture
async def engine():
    e = FakeEngine(Settings(), delay=0)
    await e.start()
    yield e
    await e.close()


async def test_wrong_language_start_is_dropped_and_the_retry_streamed(engine: FakeEngine) -> None:
    engine.enqueue("Cats like the sun because it is warm.", "猫喜欢晒太阳，因为阳光很温暖。")
    text, result = await run(engine, GenerationRequest(messages=messages(ZH_Q), sampling=SamplingParams(language_check=True)))
    assert text == "猫喜欢晒太阳，因为阳光很温暖。"
    assert result.language_retry is True and result.finish_reason == "stop"
    assert len(engine.requests) == 2
    assert engine.requests[1].messages[0]["content"] == lc.steered(engine.requests[0], "zh").messages[0]["content"]


async def test_right_language_passes_through_untouched(engine: FakeEngine) -> None:
    engine.enqueue("猫喜欢晒太阳，因为阳光很温暖。")
    text, result = await run(engine, GenerationRequest(messages=messages(ZH_Q), sampling=SamplingParams(language_check=True)))
    assert text == "猫喜欢晒太阳，因为阳光很温暖。" and result.language_retry is False
    assert len(engine.requests) == 1


async def test_only_one_retry_even_when_it_is_wrong_again(engine: FakeEngine) -> None:
    engine.enqueue("Cats like the sun because it is warm.", "Still English, every single word.")
    text, result = await run(engine, GenerationRequest(messages=messages(ZH_Q), sampling=SamplingParams(language_check=True)))
    assert text == "Still English, every single word." and result.language_retry is True
    assert len(engine.requests) == 2


async def test_switched_off_or_not_applicable_means_one_plain_request(engine: FakeEngine) -> None:
    engine.enqueue("Cats like the sun because it is warm.", "Cats like the sun because it is warm.")
    text, _ = await run(engine, GenerationRequest(messages=messages(ZH_Q), sampling=SamplingParams(language_check=False)))
    assert text.startswith("Cats")
    text, _ = await run(engine, GenerationRequest(messages=messages(ZH_Q, system="You are a pirate."), sampling=SamplingParams(language_check=True)))
    assert text.startswith("Cats")
    assert len(engine.requests) == 2


async def test_a_short_reply_ends_undecided_and_is_released(engine: FakeEngine) -> None:
    engine.enqueue("OK")
    text, result = await run(engine, GenerationRequest(messages=messages(ZH_Q), sampling=SamplingParams(language_check=True)))
    assert text == "OK" and result.language_retry is False and len(engine.requests) == 1


async def test_cancel_reaches_the_running_generation(engine: FakeEngine) -> None:
    slow = FakeEngine(Settings(), delay=0.05)
    await slow.start()
    try:
        slow.enqueue("猫" * 200)
        gen = await lc.submit(slow, GenerationRequest(messages=messages(ZH_Q), sampling=SamplingParams(language_check=True)))
        await asyncio.sleep(0.2)
        gen.cancel()
        await asyncio.wait_for(gen.text(), 5)
        assert gen.result.finish_reason == "cancelled"
    finally:
        await slow.close()
