"""Token bytes -> clean text, one token at a time.

Byte-level BPE models (Qwen, Llama 3, ...) split one Chinese character across several tokens, so a
token's bytes are often half a character. :class:`TextStream` turns the byte pieces of generated
tokens into text that is safe to send at once:

* never half a UTF-8 character (the tail is held until the next token completes it);
* invalid byte sequences are dropped, never turned into U+FFFD (a user should never see "�");
* text that could be the beginning of a stop string is held back until it is clear it is not one,
  and a stop string itself is cut, never emitted.

It is pure Python over the C incremental decoder, so the per-token cost is a few microseconds.
"""

from __future__ import annotations

import codecs
from typing import Iterable


class TextStream:
    """Incremental detokenizer with stop-string hold-back.

    ``feed(piece)`` returns the text that may be emitted now; after :attr:`stopped` turns True the
    caller ends the generation (everything before the stop string has been returned).
    ``flush()`` returns what was held back when the generation ends for another reason.
    """

    __slots__ = ("_decoder", "_stops", "_max_stop", "_held", "stopped")

    def __init__(self, stop: Iterable[str] = ()):
        # errors="ignore": invalid bytes vanish; an incomplete trailing sequence is kept inside the
        # decoder until more bytes arrive (or dropped at the final flush).
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._stops = tuple(s for s in stop if s)
        self._max_stop = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is safe to emit now."""
        if self.stopped:
            return ""
        text = self._decoder.decode(piece)
        if not self._stops:
            return text
        if not text:
            return ""
        return self._scan(self._held + text)

    def flush(self) -> str:
        """End of generation: return the held-back text (no stop string was completed)."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return text

    def _scan(self, buf: str) -> str:
        # A completed stop string: emit what precedes the earliest one and stop.
        cut = -1
        for s in self._stops:
            i = buf.find(s)
            if i != -1 and (cut == -1 or i < cut):
                cut = i
        if cut != -1:
            self.stopped = True
            self._held = ""
            return buf[:cut]
        # Hold back the longest suffix that is a proper prefix of some stop string.
        hold = 0
        start = max(0, len(buf) - self._max_stop + 1)
        for i in range(start, len(buf)):
            tail = buf[i:]
            if any(s.startswith(tail) for s in self._stops):
                hold = len(buf) - i
                break
        if hold:
            self._held = buf[-hold:]
            return buf[:-hold]
        self._held = ""
        return buf
