"""Answers read aloud in the terminal (``chat --speak``, ``listen``): the configured TTS engine on
the default audio device, or one line saying why not, after which the chat goes on in text."""

from __future__ import annotations

from typing import Callable, Optional

import click

from xiaoq.config import Settings
from xiaoq.errors import VoiceUnavailable
from xiaoq.voice.speaking import Play, SpokenReply


def reply_speaker(settings: Settings, play: Optional[Play] = None) -> Optional[Callable[[], SpokenReply]]:
    """A maker of one :class:`SpokenReply` per answer; None (after one stderr line) when this
    machine cannot speak. ``play`` replaces the audio device (tests, benchmarks)."""
    from xiaoq.voice.service import build_tts

    try:
        engine = build_tts(settings)
        if engine is None:
            raise VoiceUnavailable("speech synthesis is off (--tts off)")
        stop: Callable[[], None] = lambda: None  # noqa: E731
        if play is None:
            from xiaoq.voice.devices import DevicePlayer

            player = DevicePlayer()
            play, stop = player.play, player.stop
    except VoiceUnavailable as e:
        click.echo(f"speech: {e.message}; answers are shown, not spoken.", err=True)
        return None
    voice = settings.tts_voice if settings.tts == "espeak" else None
    return lambda: SpokenReply(engine, play, stop, voice)  # type: ignore[arg-type]
