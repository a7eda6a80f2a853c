"""Text to speech with Debian's ``espeak-ng``: Mandarin (``cmn``) and English, offline, robotic.

It runs as a child process per sentence (a few tens of milliseconds each), started from the
service's niced worker thread so it inherits the low priority. Text goes in on stdin, never on the
command line, so an answer that starts with ``-`` is never taken for an option.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from typing import Iterator, Sequence

from xiaoq.errors import VoiceUnavailable
from xiaoq.voice.audio import pcm_of_wav
from xiaoq.voice.types import Voice

#: The voice used for a language code when a request gives only the language.
DEFAULT_VOICES = {"zh": "cmn", "en": "en-us"}
#: espeak-ng speaks at 175 words per minute by default; ``speed`` scales that.
BASE_WPM = 175
SAMPLE_RATE = 22050
_TIMEOUT_S = 30


def _language_of(code: str) -> str:
    base = code.split("-")[0].lower()
    return {"cmn": "zh", "yue": "zh"}.get(base, base)


@functools.lru_cache(maxsize=4)
def _list_voices(binary: str) -> tuple[Voice, ...]:
    """Every voice ``espeak-ng --voices`` lists, the language defaults first."""
    out = subprocess.run([binary, "--voices"], capture_output=True, text=True, timeout=_TIMEOUT_S, check=True).stdout
    found = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 2:
            found.append(Voice(name=cols[1], language=_language_of(cols[1]), sample_rate=SAMPLE_RATE))
    defaults = [Voice(name, lang, SAMPLE_RATE) for lang, name in DEFAULT_VOICES.items() if any(v.name == name for v in found)]
    return tuple(defaults + [v for v in found if v not in defaults])


class EspeakTTS:
    """``espeak-ng --stdout`` behind :class:`~xiaoq.voice.types.TTSEngine`."""

    name = "espeak"

    def __init__(self, binary: str = "espeak-ng"):
        path = shutil.which(binary)
        if path is None:
            raise VoiceUnavailable("Text to speech needs espeak-ng: install it (Debian/Ubuntu: apt-get install espeak-ng).")
        self.binary = path

    def voices(self) -> Sequence[Voice]:
        return _list_voices(self.binary)

    def synthesize(self, text: str, voice: Voice, speed: float = 1.0) -> Iterator[bytes]:
        wpm = str(max(80, min(450, round(BASE_WPM * speed))))
        cmd = [self.binary, "-v", voice.name, "-s", wpm, "-b", "1", "--stdin", "--stdout"]
        done = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=_TIMEOUT_S)
        if done.returncode != 0:
            raise VoiceUnavailable(f"espeak-ng failed: {done.stderr.decode(errors='replace').strip()[:200]}")
        pcm, rate = pcm_of_wav(done.stdout)
        if rate != voice.sample_rate:
            raise VoiceUnavailable(f"espeak-ng wrote {rate} Hz audio, expected {voice.sample_rate} Hz.")
        yield pcm
