"""The voice room's front door: the configured engines, their worker threads and their counters.

Who owns what: this service owns one ASR engine and one TTS engine, each driven by its own
:class:`~xiaoq.voice.worker.LowPriorityWorker` (one niced thread, bounded queue). Callers, the HTTP
routes and the terminal commands, only ``await`` its coroutines; they never touch an engine, so
no engine is ever used from two threads and no speech work runs on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from contextlib import nullcontext
from typing import Any, AsyncIterator, Callable, ContextManager, Optional, TypeVar

from xiaoq.config import Settings
from xiaoq.errors import InvalidRequest, VoiceUnavailable
from xiaoq.voice.audio import decode_audio
from xiaoq.voice.text import ClauseSplitter, detect_language
from xiaoq.voice.types import ASREngine, Transcript, TTSEngine, Voice
from xiaoq.voice.worker import LowPriorityWorker

T = TypeVar("T")

#: Voice names OpenAI clients send by default; they mean "pick by the text's language" here.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"})
MAX_SPEECH_CHARS = 4096
#: Seconds the chat engine stays idle before the ASR model loads in the background.
WARM_QUIET_SECONDS = 2.0


def normalize_language(code: Optional[str]) -> Optional[str]:
    """``zh-CN`` / ``cmn`` / ``ZH`` -> ``zh``; ``en-US`` -> ``en``; empty or ``auto`` -> None."""
    if not code or code.strip().lower() in ("auto", ""):
        return None
    base = code.strip().replace("_", "-").split("-")[0].lower()
    return {"cmn": "zh", "chinese": "zh", "english": "en"}.get(base, base)


def build_asr(settings: Settings) -> Optional[ASREngine]:
    """The configured ASR engine (not loaded yet), None when off; VoiceUnavailable without a model."""
    if settings.asr == "off":
        return None
    from xiaoq.voice.models import resolve_asr_model
    from xiaoq.voice.whisper import WhisperASR

    return WhisperASR(resolve_asr_model(settings.asr_model), settings.asr_model)


def build_tts(settings: Settings) -> Optional[TTSEngine]:
    """The configured TTS engine, None when off; VoiceUnavailable when it cannot run here."""
    if settings.tts == "off":
        return None
    if settings.tts == "piper":
        from xiaoq.voice.piper import PiperTTS

        if not settings.tts_voice:
            raise VoiceUnavailable("--tts piper needs --tts-voice: a Piper voice .onnx file or a directory of them.")
        return PiperTTS(Path(settings.tts_voice).expanduser())
    from xiaoq.voice.espeak import EspeakTTS

    return EspeakTTS()


class _Lazy:
    """An engine built on first use; a failure is kept and re-raised (the fix is the operator's)."""

    def __init__(self, build: Callable[[], Any], off_message: str):
        self._build, self._off = build, off_message
        self._lock = threading.Lock()
        self._value: Any = None
        self._error: Optional[VoiceUnavailable] = None
        self._built = False

    def get(self) -> Any:
        with self._lock:
            if not self._built:
                try:
                    self._value = self._build()
                except VoiceUnavailable as e:
                    self._error = e
                self._built = True
        if self._error is not None:
            raise self._error
        if self._value is None:
            raise VoiceUnavailable(self._off)
        return self._value

    def describe(self) -> Optional[Any]:
        """The engine, or None when it is off or failed (never raises)."""
        try:
            return self.get()
        except VoiceUnavailable:
            return None


class VoiceService:
    """Transcribe uploads and speak text, off the event loop, one job at a time per engine."""

    def __init__(
        self, settings: Settings, asr: Optional[ASREngine] = None, tts: Optional[TTSEngine] = None,
        lend_core: Callable[[], ContextManager[None]] = nullcontext,
    ):
        """``lend_core``: the chat engine's, so decoding makes room while a speech job runs."""
        self.settings = settings
        self._asr = _Lazy((lambda: asr) if asr is not None else (lambda: build_asr(settings)), "Speech recognition is off on this server (--asr off).")
        self._tts = _Lazy((lambda: tts) if tts is not None else (lambda: build_tts(settings)), "Speech synthesis is off on this server (--tts off).")
        self._closed = threading.Event()
        self.asr_worker = LowPriorityWorker("asr", lend_core=lend_core)
        self.tts_worker = LowPriorityWorker("tts", lend_core=lend_core)
        self.counters: dict[str, float] = {
            "voice_asr_requests_total": 0, "voice_asr_audio_seconds_total": 0.0, "voice_asr_busy_seconds_total": 0.0,
            "voice_tts_requests_total": 0, "voice_tts_characters_total": 0, "voice_tts_busy_seconds_total": 0.0,
        }

    # ---- lifecycle ------------------------------------------------------------------------------
    def warm(self) -> None:
        """Load the ASR model in the background (first transcription then costs no load time)."""
        if self._asr.describe() is not None:
            self.asr_worker.submit(self._asr.get().load).add_done_callback(lambda f: f.exception())

    def warm_when_idle(self, idle: Callable[[], bool], quiet: float = WARM_QUIET_SECONDS, poll: float = 0.25) -> None:
        """:meth:`warm` once ``idle()`` (the chat engine loaded, nothing generating) has held for
        ``quiet`` seconds. Loading the ASR model means seconds of imports and reading the model:
        done at start it competes with the chat model's load and the first answer for a small
        CPU. A transcription asked for before then loads the model itself."""
        def wait() -> None:
            calm_since: Optional[float] = None
            while not self._closed.wait(poll):
                if not idle():
                    calm_since = None
                elif calm_since is None:
                    calm_since = time.monotonic()
                elif time.monotonic() - calm_since >= quiet:
                    self.warm()
                    return

        threading.Thread(target=wait, name="xiaoq-asr-warm", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self.asr_worker.shutdown()
        self.tts_worker.shutdown()

    async def _run(self, worker: LowPriorityWorker, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(worker.submit(fn, *args))

    # ---- speech to text -------------------------------------------------------------------------
    def check_language(self, language: Optional[str]) -> Optional[str]:
        """The normalized language, or InvalidRequest when the model cannot understand it."""
        lang = normalize_language(language)
        engine: ASREngine = self._asr.get()
        known = engine.languages()
        if lang is not None and known is not None and lang not in known:
            raise InvalidRequest(
                f"The ASR model {engine.model!r} understands {', '.join(known)} only. For {lang!r} configure a multilingual "
                "model: `xiaoq pull --asr small`, then `xiaoq serve --asr-model small`.",
                code="unsupported_language",
            )
        return lang

    async def transcribe(self, audio: bytes, language: Optional[str] = None) -> Transcript:
        """Decode and transcribe ``audio`` on the ASR thread; timings say where the time went."""
        lang = self.check_language(language)
        engine: ASREngine = self._asr.get()
        submitted = time.perf_counter()
        transcript = await self._run(self.asr_worker, self._transcribe_now, engine, audio, lang, submitted)
        self.counters["voice_asr_requests_total"] += 1
        self.counters["voice_asr_audio_seconds_total"] += transcript.duration
        return transcript

    def _transcribe_now(self, engine: ASREngine, audio: bytes, lang: Optional[str], submitted: float) -> Transcript:
        started = time.perf_counter()
        samples = decode_audio(audio)
        decoded = time.perf_counter()
        t = engine.transcribe(samples, lang)
        done = time.perf_counter()
        self.counters["voice_asr_busy_seconds_total"] += done - started
        timings = {"queue_ms": _ms(started - submitted), "decode_ms": _ms(decoded - started), **t.timings, "total_ms": _ms(done - submitted)}
        return Transcript(t.text, t.language, t.duration, timings)

    # ---- text to speech -------------------------------------------------------------------------
    def pick_voice(self, text: str, voice: Optional[str]) -> Voice:
        """A language code picks that language's default voice; an engine voice name is itself;
        nothing (or an OpenAI stock name) picks by the text's language."""
        engine: TTSEngine = self._tts.get()
        voices = list(engine.voices())
        wanted = voice.strip() if voice else ""
        if not wanted or wanted.lower() in OPENAI_VOICES or wanted.lower() == "auto":
            wanted = self.settings.tts_voice if (self.settings.tts == "espeak" and self.settings.tts_voice) else detect_language(text)
        for v in voices:
            if v.name == wanted:
                return v
        lang = normalize_language(wanted)
        for v in voices:
            if v.language == lang:
                return v
        names = ", ".join(sorted({v.language for v in voices})[:20])
        raise InvalidRequest(f"Unknown voice {voice!r}: give a language code ({names}) or a voice name of the {engine.name} engine.", code="unknown_voice")

    def prepare_speech(self, text: str, voice: Optional[str]) -> tuple[Voice, list[str]]:
        """Check the request before any byte is sent: the voice, and the text cut into sentences."""
        if not text.strip():
            raise InvalidRequest("input is empty: give the text to speak.", code="empty_input")
        if len(text) > MAX_SPEECH_CHARS:
            raise InvalidRequest(f"input is longer than {MAX_SPEECH_CHARS} characters.", code="input_too_long")
        chosen = self.pick_voice(text, voice)
        splitter = ClauseSplitter()
        pieces = splitter.feed(text) + splitter.flush()
        if not pieces:
            raise InvalidRequest("input has nothing that can be spoken.", code="empty_input")
        return chosen, pieces

    async def speak(self, pieces: list[str], voice: Voice, speed: float = 1.0) -> AsyncIterator[bytes]:
        """PCM (s16le mono at ``voice.sample_rate``), one sentence at a time, as each is ready."""
        engine: TTSEngine = self._tts.get()
        self.counters["voice_tts_requests_total"] += 1
        for piece in pieces:
            pcm = await self._run(self.tts_worker, self._synthesize_now, engine, piece, voice, speed)
            self.counters["voice_tts_characters_total"] += len(piece)
            yield pcm

    def _synthesize_now(self, engine: TTSEngine, text: str, voice: Voice, speed: float) -> bytes:
        started = time.perf_counter()
        pcm = b"".join(engine.synthesize(text, voice, speed))
        self.counters["voice_tts_busy_seconds_total"] += time.perf_counter() - started
        return pcm

    # ---- reporting ------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What the web UI needs: which halves work, the ASR languages, the TTS voices' languages."""
        asr, tts = self._asr.describe(), self._tts.describe()
        return {
            "asr": None if asr is None else {"engine": asr.name, "model": asr.model, "languages": list(asr.languages() or []) or None},
            "tts": None if tts is None else {"engine": tts.name, "languages": sorted({v.language for v in tts.voices()})},
        }

    def summary(self) -> str:
        """One line for the server log: what listens and what speaks, or why not."""
        return f"speech recognition {self._describe(self._asr, lambda e: f'{e.model} ({e.name})')}; speech synthesis {self._describe(self._tts, lambda e: e.name)}"

    @staticmethod
    def _describe(lazy: _Lazy, name: Callable[[Any], str]) -> str:
        try:
            return name(lazy.get())
        except VoiceUnavailable as e:
            return f"unavailable ({e.message.rstrip('.')})"

    def stats(self) -> dict[str, Any]:
        """Counters and queue depths for /metrics."""
        return {**self.counters, "voice_asr_queue_depth": self.asr_worker.pending, "voice_tts_queue_depth": self.tts_worker.pending}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
