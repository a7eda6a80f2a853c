"""Voice in the web UI, in Debian's headless Chromium with its fake microphone playing an espeak-ng
recording (``--use-file-for-fake-audio-capture``), against a real XiaoQ server: real Whisper tiny.en,
real espeak-ng, real llama.cpp on the tiny GGUF (whose answers are gibberish, but stream and end).

The microphone button records the sentence, the transcript appears as the question, the answer
streams and its audio element plays, fetched with the API key and played from a ``blob:`` URL
under the page's strict CSP. A denied permission and a machine without a microphone each give a
clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from playwright.sync_api import expect

from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.voice.audio import pcm_of_wav, wav_bytes
from xiaoq.voice.wer import word_error_rate

from tests.voice.helpers import espeak_wav
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, open_page, screenshot, xiaoq_server

pytestmark = pytest.mark.browser

SENTENCE = "Please turn on the kitchen light."
KEY = "voice-test-key"


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silence, the sentence, then silence long enough for the hands-free end of speech."""
    pcm, rate = pcm_of_wav(espeak_wav(SENTENCE))
    silence = lambda s: np.zeros(int(rate * s), dtype="<i2").tobytes()  # noqa: E731
    path = tmp_path_factory.mktemp("voice") / "question.wav"
    path.write_bytes(wav_bytes(silence(0.8) + pcm + silence(6.0), rate))
    return path


@pytest.fixture(scope="module")
def mic_browser(browser: Any, speech_file: Path) -> Iterator[Any]:
    """A second Chromium, from the suite's Playwright, whose microphone plays ``speech_file`` once
    (no fake permission UI: each test grants or withholds the permission itself)."""
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={speech_file}%noloop",
            "--autoplay-policy=no-user-gesture-required"]
    b = browser.browser_type.launch(executable_path=str(CHROMIUM), args=args)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("web-voice") / "xiaoq.db"
    with xiaoq_server(lambda s: LlamaEngine(tiny_gguf, s), db, default_max_tokens=24, max_tokens=64, api_key=KEY) as url:
        yield url


@pytest.fixture
def page_with_mic(mic_browser: Any, server: str) -> Iterator[tuple[Any, Any]]:
    with open_page(mic_browser, server, permissions=["microphone"]) as (page, watch):
        enter_key(page, server)
        yield page, watch


def enter_key(page: Any, server: str) -> None:
    page.goto(server)
    dialog = page.locator(".modal input")
    dialog.fill(KEY)
    dialog.press("Enter")
    expect(page.get_by_test_id("mic")).to_be_visible()


def _spoken_answer(page: Any) -> None:
    """The question (the transcript) appears, the answer streams, and its audio element plays."""
    question = page.locator(".msg-user").last
    expect(question).to_be_visible(timeout=60_000)
    heard = question.inner_text()
    print(f"transcript in the page: {heard!r}")
    assert word_error_rate([(SENTENCE, heard)]) <= 0.3
    page.wait_for_selector(".msg-assistant:last-child:not([data-status=streaming])", timeout=60_000)
    audio = page.locator("audio[data-testid=answer-audio]")
    expect(audio).to_have_attribute("data-played", "1", timeout=60_000)
    src = audio.get_attribute("src") or ""
    assert src.startswith("blob:") or src == "", src


def test_mic_click_records_transcribes_sends_and_the_answer_is_spoken(page_with_mic: tuple[Any, Any]) -> None:
    page, watch = page_with_mic
    page.get_by_test_id("speaker").click()
    expect(page.get_by_test_id("speaker")).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("mic").click()  # a click (not a hold): listen until the next click
    expect(page.get_by_test_id("voice-status")).to_have_attribute("data-phase", "listening")
    screenshot(page, "voice-listening")
    page.wait_for_timeout(3800)  # the fake microphone plays the sentence
    page.get_by_test_id("mic").click()
    _spoken_answer(page)
    screenshot(page, "voice-answered")
    watch.assert_clean()


def test_holding_the_mic_records_until_release(page_with_mic: tuple[Any, Any]) -> None:
    page, watch = page_with_mic
    page.get_by_test_id("speaker").click()
    page.get_by_test_id("mic").hover()
    page.mouse.down()  # push to talk: held while speaking
    expect(page.get_by_test_id("voice-status")).to_have_attribute("data-phase", "listening")
    page.wait_for_timeout(3800)
    expect(page.get_by_test_id("voice-status")).to_have_attribute("data-phase", "listening")  # still held
    page.mouse.up()  # where the button was: the Stop button appeared meanwhile and moved it
    _spoken_answer(page)
    watch.assert_clean()


def test_hands_free_ends_the_utterance_by_itself(page_with_mic: tuple[Any, Any]) -> None:
    page, watch = page_with_mic
    page.get_by_test_id("speaker").click()
    page.get_by_test_id("hands-free").click()
    expect(page.get_by_test_id("voice-status")).to_have_attribute("data-phase", "listening")
    _spoken_answer(page)  # no second click: the silence after the sentence ended it
    page.get_by_test_id("stop").click()  # Stop ends hands-free listening and the speech
    expect(page.get_by_test_id("hands-free")).to_have_attribute("aria-pressed", "false")
    watch.assert_clean()


def test_denied_permission_says_so(mic_browser: Any, server: str) -> None:
    with open_page(mic_browser, server) as (page, watch):  # no microphone permission granted
        enter_key(page, server)
        page.get_by_test_id("mic").click()
        expect(page.get_by_test_id("voice-message")).to_contain_text("允许使用麦克风")
        expect(page.get_by_test_id("voice-status")).not_to_have_attribute("data-phase", "listening")
        watch.assert_clean()


def test_no_microphone_says_so(browser: Any, server: str) -> None:
    """The suite's ordinary Chromium has no capture device at all."""
    with open_page(browser, server, permissions=["microphone"]) as (page, watch):
        enter_key(page, server)
        page.get_by_test_id("lang").click()  # English this time
        page.get_by_test_id("mic").click()
        expect(page.get_by_test_id("voice-message")).to_contain_text("No microphone was found")
        watch.assert_clean()
