"""Conversation titles from the first question.

A title must exist the moment the sidebar shows the conversation, and must never delay the answer,
so the first one is a heuristic: the first meaningful line of the question, whitespace collapsed,
cut at a width that reads well in a sidebar (CJK characters count double, as they are displayed).
"""

from __future__ import annotations

import re
import unicodedata

#: Display columns of a title (a CJK character takes two): ~16 Chinese characters or ~32 Latin.
TITLE_WIDTH = 32

_FENCE = re.compile(r"^\s*(```|~~~)")
_LEADING_NOISE = re.compile(r"^[\s#>*\-+•·:：,，.。!！?？]+")


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def heuristic_title(text: str, width: int = TITLE_WIDTH) -> str:
    """The first non-empty, non-fence line of ``text``, cut to ``width`` display columns with "…".

    >>> heuristic_title("帮我写一个冒泡排序的Python函数，并解释原理。")
    '帮我写一个冒泡排序的Python函数…'
    """
    line = ""
    for raw in text.splitlines():
        if _FENCE.match(raw):
            continue
        candidate = _LEADING_NOISE.sub("", " ".join(raw.split()))
        if candidate:
            line = candidate
            break
    if not line:
        line = " ".join(text.split())
    out, used = [], 0
    for ch in line:
        w = _width(ch)
        if used + w > width:
            # Prefer cutting Latin text at a word boundary when one is near.
            cut = "".join(out)
            space = cut.rfind(" ")
            if space >= len(cut) * 2 // 3:
                cut = cut[:space]
            return cut.rstrip(" ,，、;；:：") + "…"
        out.append(ch)
        used += w
    return line.rstrip("。.!！?？ ") or line
