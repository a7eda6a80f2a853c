"""Text to speech with Piper voices (``--tts piper --tts-voice DIR_OR_FILE.onnx``): natural, offline.

A Piper voice is an ``.onnx`` file with its ``.onnx.json`` config beside it; a directory may hold
several (say ``zh_CN-huayan-medium`` and ``en_US-lessac-medium``), and a request's language picks
the first voice whose config speaks it. The ONNX session is built here with one intra-op thread
instead of Piper's default of every core, for the same reason ASR runs on one thread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from xiaoq.errors import VoiceUnavailable
from xiaoq.voice.types import Voice


def _voice_files(path: Path) -> list[Path]:
    if path.is_file() and path.suffix == ".onnx":
        return [path]
    if path.is_dir():
        return sorted(p for p in path.glob("*.onnx") if p.with_name(p.name + ".json").is_file())
    return []


def _voice_of(model: Path) -> Voice:
    config = json.loads(model.with_name(model.name + ".json").read_text(encoding="utf-8"))
    code = str((config.get("language") or {}).get("code") or model.name.split("-")[0])
    return Voice(name=model.stem, language=code.replace("_", "-").split("-")[0].lower(), sample_rate=int(config["audio"]["sample_rate"]))


class PiperTTS:
    """``piper.PiperVoice`` behind :class:`~xiaoq.voice.types.TTSEngine`."""

    name = "piper"

    def __init__(self, path: Path):
        try:
            import piper  # noqa: F401
        except ImportError:
            raise VoiceUnavailable("--tts piper needs the piper-tts package: pip install piper-tts (or use --tts espeak).") from None
        self.files = {p.stem: p for p in _voice_files(path)}
        if not self.files:
            raise VoiceUnavailable(f"--tts-voice {path}: no Piper voice there (a NAME.onnx file with NAME.onnx.json beside it).")
        try:
            self._voices = tuple(_voice_of(p) for p in self.files.values())
        except (OSError, ValueError, KeyError) as e:
            raise VoiceUnavailable(f"--tts-voice {path}: unreadable Piper voice config ({type(e).__name__}: {e}).") from None
        self._loaded: dict[str, Any] = {}

    def voices(self) -> Sequence[Voice]:
        return self._voices

    def _load(self, voice: Voice) -> Any:
        if voice.name not in self._loaded:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig

            model = self.files[voice.name]
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            config = PiperConfig.from_dict(json.loads(model.with_name(model.name + ".json").read_text(encoding="utf-8")))
            session = onnxruntime.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
            self._loaded[voice.name] = PiperVoice(session=session, config=config)
        return self._loaded[voice.name]

    def synthesize(self, text: str, voice: Voice, speed: float = 1.0) -> Iterator[bytes]:
        from piper import SynthesisConfig

        piper_voice = self._load(voice)
        scale = None if speed == 1.0 else piper_voice.config.length_scale / speed  # None: the voice's own
        for chunk in piper_voice.synthesize(text, syn_config=SynthesisConfig(length_scale=scale)):
            yield chunk.audio_int16_bytes
