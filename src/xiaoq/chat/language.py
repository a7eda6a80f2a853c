"""The language a reply should be in, decided once for the system prompt's line.

A message that names a target language ("translate into Chinese", "翻译成英文", "用英语回答") gets a
reply in that language; any other message gets one in its own language. The 0.5B model writes in
the language of its system line rather than the one a message asks for, so the line is chosen by
the target: an English message asking for Chinese under the English line came back in English.
"""

from __future__ import annotations

import re
from typing import Literal, Optional

Language = Literal["zh", "en"]

_TARGETS: list[tuple[re.Pattern[str], Language]] = [
    (re.compile(r"\b(?:into|to|in)\s+(?:simplified\s+|traditional\s+)?(?:chinese|mandarin)\b", re.I), "zh"),
    (re.compile(r"\b(?:into|to|in)\s+english\b", re.I), "en"),
    (re.compile(r"(?:翻译|翻|译)(?:成|为|作)\s*(?:中文|汉语|普通话)|用(?:中文|汉语|普通话)"), "zh"),
    (re.compile(r"(?:翻译|翻|译)(?:成|为|作)\s*(?:英文|英语)|用(?:英文|英语)"), "en"),
]


def _han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def is_chinese(text: str) -> bool:
    """Mostly Chinese: a Han character weighs as much as four Latin letters (about a word)."""
    han = sum(map(_han, text))
    latin = sum(ch.isascii() and ch.isalpha() for ch in text)
    return han > 0 and han * 4 >= latin


def requested_language(message: str) -> Optional[Language]:
    """The target language the message names first, if any."""
    found = [(m.start(), lang) for pattern, lang in _TARGETS for m in [pattern.search(message)] if m]
    return min(found)[1] if found else None


def reply_language(message: str) -> Language:
    """The language the message asks for, else its own."""
    return requested_language(message) or ("zh" if is_chinese(message) else "en")
