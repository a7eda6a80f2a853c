"""Presets and per-conversation settings in the browser (Debian's Chromium, the real llama.cpp
engine on the tiny GGUF): a conversation started with the 编程导师 preset holds a copy of its
prompt; the settings dialog shows and changes the prompt, temperature, top_p and max tokens (the
next reply obeys max tokens), and "reset to server defaults" clears them; in English the picker
lists the English presets, and the preset editor changes a built-in and resets it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from xiaoq.engine.llama_engine import LlamaEngine

from tests.web.conftest import conversation_id, open_page, screenshot, send, wait_answer_done, xiaoq_server

pytestmark = pytest.mark.browser


def test_preset_then_settings_then_reset(browser: Any, tiny_gguf: Path, tmp_path: Path) -> None:
    with xiaoq_server(lambda s: LlamaEngine(tiny_gguf, s), tmp_path / "s.db", default_max_tokens=12) as url:
        tutor = httpx.get(url + "/api/presets/tutor-zh").json()
        with open_page(browser, url) as (page, watch):
            page.goto(url + "/")
            picker = page.get_by_test_id("preset")
            expect(picker.locator("option")).to_have_text(["通用助手", "编程导师", "知识库助手", "翻译"])
            picker.select_option("tutor-zh")
            expect(page.locator(".preset-description")).to_contain_text("一步一步")
            screenshot(page, "preset-picker")
            send(page, "怎么写循环")
            wait_answer_done(page)
            cid = conversation_id(page)
            conv = httpx.get(f"{url}/api/conversations/{cid}").json()
            assert conv["system_prompt"] == tutor["system_prompt"]

            page.get_by_test_id("conv-settings").click()
            dialog = page.get_by_test_id("settings-dialog")
            expect(dialog.locator("textarea[name=system_prompt]")).to_have_value(tutor["system_prompt"])
            expect(dialog.locator("input[name=temperature]")).to_have_attribute("placeholder", "默认 0")  # the server's temperature
            dialog.locator("input[name=temperature]").fill("3")
            expect(dialog.locator(".notice-error")).to_be_visible()
            expect(dialog.locator("button[type=submit]")).to_be_disabled()
            dialog.locator("input[name=temperature]").fill("0.3")
            dialog.locator("input[name=top_p]").fill("0.8")
            dialog.locator("input[name=max_tokens]").fill("5")
            dialog.locator("textarea[name=system_prompt]").fill("只用一句话回答。")
            screenshot(page, "conversation-settings")
            dialog.locator("button[type=submit]").click()
            expect(dialog).to_have_count(0)
            conv = httpx.get(f"{url}/api/conversations/{cid}").json()
            assert conv["system_prompt"] == "只用一句话回答。"
            assert conv["settings"] == {"temperature": 0.3, "top_p": 0.8, "max_tokens": 5}
            send(page, "再说一遍")
            page.wait_for_function("document.querySelectorAll('.msg-assistant').length === 2")
            wait_answer_done(page)
            last = httpx.get(f"{url}/api/conversations/{cid}").json()["messages"][-1]
            assert last["completion_tokens"] == 5 and last["finish_reason"] == "length"

            page.get_by_test_id("conv-settings").click()
            dialog.locator("button.reset-defaults").click()
            expect(dialog.locator("input[name=max_tokens]")).to_have_value("")
            dialog.locator("button[type=submit]").click()
            expect(dialog).to_have_count(0)
            conv = httpx.get(f"{url}/api/conversations/{cid}").json()
            assert conv["system_prompt"] is None and conv["settings"] == {}

            page.get_by_test_id("new-chat").click()
            page.get_by_test_id("lang").click()
            expect(page.get_by_test_id("preset").locator("option")).to_have_text(
                ["General assistant", "Programming tutor", "Knowledge-base assistant", "Translator"]
            )

            # The editor: change a built-in, then reset it to what XiaoQ ships.
            shipped = httpx.get(url + "/api/presets/translate-en").json()
            page.get_by_test_id("preset").select_option("translate-en")
            page.get_by_test_id("edit-preset").click()
            editor = page.get_by_test_id("preset-dialog")
            expect(editor.locator("textarea[name=system_prompt]")).to_have_value(shipped["system_prompt"])
            editor.locator("textarea[name=system_prompt]").fill("Translate everything into French.")
            editor.locator("input[name=name]").fill("French translator")
            screenshot(page, "preset-editor")
            editor.locator("button[type=submit]").click()
            expect(editor).to_have_count(0)
            expect(page.get_by_test_id("preset").locator("option:checked")).to_have_text("French translator")
            edited = httpx.get(url + "/api/presets/translate-en").json()
            assert (edited["name"], edited["system_prompt"]) == ("French translator", "Translate everything into French.")
            page.get_by_test_id("edit-preset").click()
            editor.locator("button.reset-preset").click()
            expect(editor).to_have_count(0)
            expect(page.get_by_test_id("preset").locator("option:checked")).to_have_text("Translator")
            assert httpx.get(url + "/api/presets/translate-en").json()["system_prompt"] == shipped["system_prompt"]
            watch.assert_clean()
