"""The wake phrase, heard through the ASR model rather than a keyword spotter (none ships for
"XiaoQ"): the utterance is transcribed with the phrase as a hotword, then its first words are
compared with the phrase by spelling similarity, since Whisper writes a name it does not know in
many ways ("Xiao Q", "Xiaoq", "Nio Q"). Experimental, and said so in ``xiaoq listen --help``.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import Optional

ENGLISH_PHRASE = "Hey XiaoQ"
#: The Chinese phrase, for a multilingual model: 小Q小Q (Whisper may write Q as 秋, 球, 丘 ...).
_CHINESE = re.compile(r"^\W*(?:[小晓筱][\s,，、]*[qQＱ秋球求丘酷][\s,，、。!！]*){2}")
SIMILARITY = 0.75
_WORD = re.compile(r"[\w']+")


def _squash(text: str) -> str:
    return "".join(_WORD.findall(text.lower()))


def after_wake_phrase(text: str, phrase: str = ENGLISH_PHRASE) -> Optional[str]:
    """What was said after the wake phrase ("" when nothing), or None when ``text`` does not start
    with something that sounds like it."""
    m = _CHINESE.match(text)
    if m:
        return text[m.end():].lstrip(" ,，、。.!！")
    target = _squash(phrase)
    words = list(_WORD.finditer(text))
    scored = [(SequenceMatcher(None, _squash(" ".join(w.group() for w in words[:n])), target).ratio(), n) for n in range(1, min(5, len(words)) + 1)]
    best, n = max(scored, key=lambda s: (s[0], -s[1]), default=(0.0, 0))
    if best < SIMILARITY:
        return None
    return text[words[n - 1].end():].lstrip(" ,，、。.!！?？")
