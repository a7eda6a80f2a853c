"""What must survive a summary word for word: what the user said about themselves.

Why not leave it to the model's summary: measured with Qwen2.5-0.5B, a transcript of a user's name
and pet followed by three long topic turns is summarized as "对话中详细介绍了长城、丝绸之路、
故宫……" — the user's one-line facts vanish, and a dedicated "list the user's facts" prompt answers
"无". A 0.5B model cannot be trusted with them, but they are cheap to find: first-person statements
("我叫…", "我养了…", "my name is…", "I live in…") in the user's own messages. Those sentences are
kept verbatim, quoted and attributed to the user, in a short block at the head of the stored summary
(the head, so that if the budget ever has to truncate the summary it cuts the model's prose, not the
facts); the model summarizes the rest. They stay the user's words: the whole summary is a user-role
data block in the prompt (``chat/prompt.py``), never system text, so a user who claimed authority
early on is remembered as having said so, not obeyed. Greedy decoding of a small model also loops
("坚固的防御路线、坚固的防御武器、" ×40): the summary goes through
:func:`xiaoq.engine.loops.trim_loops`, the loop guard's detector, which keeps one copy.
"""

from __future__ import annotations

import re
from typing import Iterable

HEADERS = {"zh": "用户说过的关于自己的话（原话引用）：", "en": "What the user said about themselves (quoted verbatim): "}
#: Longest block of user statements kept (characters); the most recent statements win.
MAX_NOTE_CHARS = 160

_SENTENCE_END = re.compile(r"(?<=[。！？!?；;\n])|(?<=\.)(?=\s)")
_ZH_SELF = re.compile(r"我(叫|是|的|养|有|住|在|家|喜欢|不喜欢|爱|讨厌|今年|属|姓|来自|从事|做|想|要|会|对.{0,6}过敏)|我们家|本人")
_EN_SELF = re.compile(r"\b(my name|i am|i'm|i have|i've got|my |i live|i like|i love|i hate|i work|call me|i was born|i'm allergic)", re.I)
_REQUEST = re.compile(r"^\s*(请|帮我|麻烦|能不能|可以|你能|please|can you|could you|tell me|explain)", re.I)


def self_statements(user_texts: Iterable[str], language: str, max_chars: int = MAX_NOTE_CHARS) -> list[str]:
    """First-person statements (not questions, not requests) from the user's messages, oldest
    first, without repeats, the most recent ones kept within ``max_chars``."""
    pattern = _ZH_SELF if language == "zh" else _EN_SELF
    found: list[str] = []
    for text in user_texts:
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            core = sentence.rstrip("。！？!?；;. ")
            if not core or sentence.endswith(("？", "?")) or _REQUEST.match(core) or not pattern.search(core):
                continue
            if core not in found:
                found.append(core)
    kept: list[str] = []
    used = 0
    for s in reversed(found):
        if used + len(s) > max_chars:
            break
        kept.append(s)
        used += len(s) + 1
    return list(reversed(kept))


def notes_block(statements: list[str], language: str) -> str:
    """The block that heads a stored summary ("" when there is nothing to keep)."""
    if not statements:
        return ""
    if language == "zh":
        return HEADERS[language] + "；".join(f"“{s}”" for s in statements) + "。\n"
    return HEADERS[language] + "; ".join(f'"{s}"' for s in statements) + ".\n"


def model_part(summary: str) -> str:
    """A stored summary without its notes block (what the model wrote), to be summarized again."""
    for header in HEADERS.values():
        if summary.startswith(header):
            _, _, rest = summary.partition("\n")
            return rest.strip()
    return summary
