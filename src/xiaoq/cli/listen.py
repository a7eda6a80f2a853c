"""``xiaoq listen``: talk to XiaoQ through the microphone, hear the answer; nothing leaves the machine.

Push-to-talk (the default): Enter starts listening, Enter again sends what was said. ``--wake``:
always listening, Silero VAD cuts the sound into utterances and an utterance that starts with the
wake phrase ("Hey XiaoQ"; 小Q小Q with a multilingual model) is a question, either the rest of it or
the next utterance. The wake phrase goes through the ASR model, not a keyword spotter: experimental.

The answer comes from the model in this process or from a server (``--url``), as in ``xiaoq chat``,
and is spoken on the default audio device while it streams.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from xiaoq.cli.chat import BOT_PREFIX, CHAT_FLAGS, CHAT_HELPS, CHAT_SETTINGS, REMOTE_FIELDS, USER_PROMPT, LocalBackend, RemoteBackend, Repl, terminal_sampling
from xiaoq.cli.options import build_settings, settings_options
from xiaoq.cli.runtime import model_path, pin_cpus
from xiaoq.config import Settings
from xiaoq.voice.types import ASREngine
from xiaoq.voice.worker import LowPriorityWorker

if TYPE_CHECKING:
    import numpy as np

LISTEN_SETTINGS = CHAT_SETTINGS + ("asr", "asr_model")
#: After the wake phrase alone, the next utterance within this many seconds is the question.
AWAKE_S = 8.0
_WORDS = re.compile(r"[\w']+|[\u3400-\u9fff]")


class Listener:
    """Turns captured speech into questions for the REPL (which answers, prints and speaks)."""

    def __init__(self, asr: ASREngine, source: Any, repl: Repl, language: Optional[str]):
        self.asr, self.source, self.repl, self.language = asr, source, repl, language
        self.worker = LowPriorityWorker("asr", max_pending=2)
        # The name as a hotword; a Chinese one only for a model that knows Chinese (it derails tiny.en).
        self.hotwords = "XiaoQ" if asr.languages() == ("en",) else "XiaoQ, 小Q"
        self.worker.submit(asr.load).result()

    def transcribe(self, samples: "np.ndarray", hotwords: Optional[str] = None) -> str:
        return self.worker.submit(self.asr.transcribe, samples, self.language, hotwords).result().text.strip()

    def ask(self, question: str) -> None:
        self.repl.write(f"{USER_PROMPT}{question}\n")
        self.repl.ask(question)

    # ---- push-to-talk ---------------------------------------------------------------------------
    def push_to_talk(self) -> None:
        while True:
            try:
                input("[Enter] talk · Ctrl-D quits ")
            except (EOFError, KeyboardInterrupt):
                self.repl.write("\n")
                return
            samples = self._record_until_enter()
            if samples is None:
                return
            text = self.transcribe(samples) if len(samples) else ""
            if text:
                self.ask(text)
            else:
                self.repl.write("(nothing heard)\n")

    def _record_until_enter(self) -> "Optional[np.ndarray]":
        import numpy as np

        blocks: list[np.ndarray] = []
        done = threading.Event()

        def capture() -> None:
            while not done.is_set() and not self.source.ended:
                block = self.source.read(timeout=0.2)
                if block is not None:
                    blocks.append(block)

        self.source.start()
        thread = threading.Thread(target=capture, name="xiaoq-capture", daemon=True)
        thread.start()
        try:
            input("listening… [Enter] sends ")
        except (EOFError, KeyboardInterrupt):
            return None
        finally:
            done.set()
            thread.join(2)
            self.source.stop()
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)

    # ---- wake phrase ----------------------------------------------------------------------------
    def wake(self) -> None:
        from xiaoq.voice.vad import Segmenter, SileroVAD
        from xiaoq.voice.wake import ENGLISH_PHRASE

        segmenter = Segmenter(SileroVAD())
        awake_until = 0.0
        self.repl.write(f"(say “{ENGLISH_PHRASE}” and your question · Ctrl-C quits)\n")
        self.source.start()
        try:
            while not self.source.ended:
                block = self.source.read(timeout=0.5)
                for utterance in segmenter.feed(block) if block is not None else []:
                    awake_until = self._heard(utterance, awake_until)
        except KeyboardInterrupt:
            self.repl.write("\n")
        finally:
            self.source.stop()

    def _heard(self, utterance: "np.ndarray", awake_until: float) -> float:
        """Handle one utterance; the new "awake until" time."""
        from xiaoq.voice.wake import ENGLISH_PHRASE, after_wake_phrase

        if time.monotonic() < awake_until:
            question: Optional[str] = self.transcribe(utterance)
        else:
            rest = after_wake_phrase(self.transcribe(utterance, hotwords=self.hotwords), ENGLISH_PHRASE)
            if rest is None:
                return 0.0
            if len(_WORDS.findall(rest)) < 2:
                self.repl.write("(yes?)\n")
                return time.monotonic() + AWAKE_S
            question = rest
        if question:
            self.ask(question)
            self.source.skip()  # what the microphone heard while XiaoQ spoke was XiaoQ
        return 0.0


def _backend(url: Optional[str], settings: Settings) -> Any:
    if url:
        return RemoteBackend(url, settings.key(), send={wire for field, wire in REMOTE_FIELDS.items() if field in settings.model_fields_set})
    pin_cpus(settings)
    return LocalBackend(model_path(settings), settings)


@click.command()
@click.option("--url", default=None, metavar="URL", help="Answers from a running XiaoQ server instead of a model loaded here")
@click.option("--wake", is_flag=True, default=False, help="Always listen; speak “Hey XiaoQ” (小Q小Q with a multilingual --asr-model) then the question. Experimental")
@click.option("--speak/--no-speak", default=True, help="Read the answers aloud on the default audio device")
@click.option("--input-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="Listen to this WAV file (in real time) instead of the microphone")
@settings_options(LISTEN_SETTINGS, flags=CHAT_FLAGS, helps=CHAT_HELPS)
def listen(url: Optional[str], wake: bool, speak: bool, input_file: Optional[Path], **given: Any) -> None:
    """Talk to XiaoQ: push-to-talk with Enter, or --wake for hands-free with a wake phrase."""
    from xiaoq.cli.voice_out import reply_speaker
    from xiaoq.voice.devices import FileSource, MicSource
    from xiaoq.voice.service import build_asr

    settings = build_settings(given, flags=CHAT_FLAGS)
    asr = build_asr(settings)
    if asr is None:
        raise click.UsageError("xiaoq listen needs speech recognition: drop --asr off")
    source = FileSource(input_file) if input_file else MicSource()  # no microphone: one line, exit 1
    sampling = terminal_sampling(settings)
    speaker = reply_speaker(settings) if speak else None
    backend = _backend(url, settings)
    click.echo(f"loading… (answers from {url or 'the model here'}, speech recognition {asr.model})", err=True)
    try:
        backend.start()
        listener = Listener(asr, source, Repl(backend, settings.system_prompt, sampling, speak=speaker), None)
        click.echo(f"XiaoQ listen · {backend.name} · {BOT_PREFIX.strip()} answers{' aloud' if speaker else ''}", err=True)
        listener.wake() if wake else listener.push_to_talk()
    finally:
        backend.close()
