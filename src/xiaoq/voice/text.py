"""What to say, and when: language of a text, Markdown stripped for speech, and a streamed answer
cut into pieces that can be spoken while the rest is still being generated.

The first piece ends at the first clause (a comma is enough) so speech starts within a breath of
the first tokens; later pieces end at sentence ends, which sound natural. Code blocks are not read
aloud.
"""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_LATIN = re.compile(r"[A-Za-z]")
#: A sentence ends at CJK/full stops, question and exclamation marks, semicolons and line breaks;
#: a Latin full stop only when followed by a space (so 3.14 and file.py stay whole).
_SENTENCE_END = re.compile(r"[。！？!?；;\n]+|\.(?=\s)")
_CLAUSE_END = re.compile(r"[，、：—]|[,:](?=\s)")
_FENCE = "```"
#: A first clause shorter than this (characters) waits for more: "Sure," alone sounds clipped.
FIRST_MIN_CHARS = 3
#: A sentence longer than this is cut at a clause so a long one does not stall the speech.
MAX_PIECE_CHARS = 160
#: Without a clause mark by then, the first piece ends after this many words (or Chinese
#: characters): waiting for a comma that comes late would delay the first sound.
FIRST_MAX_WORDS = 8
FIRST_MAX_CJK = 16
_WORD_END = re.compile(r"[A-Za-z0-9'’]+(?=\s)|[\u3400-\u9fff]")


def detect_language(text: str) -> str:
    """``zh`` when the text is mostly Chinese characters, else ``en``."""
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    return "zh" if cjk and cjk * 3 >= latin else "en"


def speakable(text: str) -> str:
    """Markdown made fit to read aloud: links keep their text, markup characters go."""
    text = re.sub(r"```.*?(```|$)", " ", text, flags=re.S)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[`*_#>|~]+", " ", text)
    text = re.sub(r"^\s*[-+]\s+", "", text, flags=re.M)
    return re.sub(r"\s+", " ", text).strip()


class ClauseSplitter:
    """Feed streamed text, get pieces to speak; ``flush()`` at the end returns the rest."""

    def __init__(self) -> None:
        self.buffer = ""
        self.in_code = False
        self.spoken = 0

    def feed(self, piece: str) -> list[str]:
        """Pieces completed by ``piece`` (possibly none)."""
        self.buffer += piece
        out: list[str] = []
        while self._step(out):
            pass
        return out

    def flush(self) -> list[str]:
        """The rest of the answer, once it is complete."""
        out: list[str] = []
        if not self.in_code:
            self._emit(self.buffer, out)
        self.buffer, self.in_code = "", False
        return out

    def _step(self, out: list[str]) -> bool:
        """Take one piece or one code block off the buffer; False when it needs more text."""
        fence = self.buffer.find(_FENCE)
        if self.in_code:
            if fence < 0:
                self.buffer = self.buffer[-2:]  # a closing fence may be arriving in halves
                return False
            self.buffer, self.in_code = self.buffer[fence + len(_FENCE):], False
            return True
        head = self.buffer if fence < 0 else self.buffer[:fence]
        cut = self._boundary(head)
        if cut is not None:
            self._emit(self.buffer[:cut], out)
            self.buffer = self.buffer[cut:]
            return True
        if fence >= 0:  # the text before a code block is a piece of its own
            self._emit(head, out)
            self.buffer, self.in_code = self.buffer[fence + len(_FENCE):], True
            return True
        return False

    def _emit(self, text: str, out: list[str]) -> None:
        said = speakable(text)
        if re.search(r"\w", said):
            out.append(said)
            self.spoken += 1

    def _boundary(self, text: str) -> "int | None":
        """End of the next piece in ``text``: a sentence end, or for the first piece (and an
        over-long sentence) a clause end."""
        min_chars = FIRST_MIN_CHARS if self.spoken == 0 else 1
        ends = list(_SENTENCE_END.finditer(text))
        if self.spoken == 0 or len(text) > MAX_PIECE_CHARS:
            ends += list(_CLAUSE_END.finditer(text))
        for end in sorted(m.end() for m in ends):
            if len(speakable(text[:end])) >= min_chars:
                return end
        return self._first_words(text) if self.spoken == 0 else None

    @staticmethod
    def _first_words(text: str) -> "int | None":
        """After FIRST_MAX_WORDS complete words or FIRST_MAX_CJK characters, whichever is first."""
        words = cjk = 0
        for m in _WORD_END.finditer(text):
            if m.group().isascii():
                words += 1
            else:
                cjk += 1
            if words >= FIRST_MAX_WORDS or cjk >= FIRST_MAX_CJK:
                return m.end()
        return None
