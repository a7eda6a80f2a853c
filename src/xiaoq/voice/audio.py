"""Audio bytes in and out: decode what browsers record, write the WAV we send back.

Decoding uses PyAV (FFmpeg's libraries inside the wheel faster-whisper already depends on), so
WAV, WebM/Opus, Ogg/Opus, MP3 and the rest decode without an ``ffmpeg`` binary. It is written here
rather than taken from ``faster_whisper.audio.decode_audio`` because that one decodes the whole
upload before anyone can look at its length: a few MB of Opus can hold hours of audio, hundreds of
MB once decoded. Here decoding stops as soon as the audio passes ``max_seconds``.
"""

from __future__ import annotations

import io
import struct
from typing import TYPE_CHECKING, Iterator

from xiaoq.errors import InvalidAudio, VoiceUnavailable
from xiaoq.voice.types import ASR_SAMPLE_RATE

if TYPE_CHECKING:  # numpy loads with the first audio, not at `xiaoq serve`'s start (issue 12)
    import numpy as np

#: Longest upload transcribed (seconds): a spoken question or a dictated note, not a meeting.
MAX_AUDIO_SECONDS = 300.0

#: WAV data size written when the length is not known yet (a streamed answer); players read to EOF.
STREAMING_DATA_SIZE = 0xFFFFFFFF - 36


def decode_audio(data: bytes, max_seconds: float = MAX_AUDIO_SECONDS, rate: int = ASR_SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples at ``rate`` from any container/codec FFmpeg knows.

    InvalidAudio (400) for empty, undecodable or over-long input, with a sentence saying which.
    """
    if not data:
        raise InvalidAudio("The audio file is empty.")
    try:
        import av
    except ImportError:
        raise VoiceUnavailable("Speech recognition is not installed on this server: pip install 'xiaoq[voice]'.") from None
    import numpy as np

    limit = int(max_seconds * rate)
    pieces: list[np.ndarray] = []
    try:
        for piece in _decoded_pieces(av, data, rate):
            pieces.append(piece)
            if sum(len(p) for p in pieces) > limit:
                raise InvalidAudio(f"The audio is longer than {max_seconds:g} seconds.")
    except (av.error.FFmpegError, ValueError, IndexError) as e:  # IndexError: no audio stream
        reason = getattr(e, "strerror", None) or _first_line(e)
        raise InvalidAudio(f"The file is not audio this server can decode (WAV, WebM/Opus, Ogg, MP3, ...): {reason}.") from None
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
    if not len(samples):
        raise InvalidAudio("The file holds no audio samples.")
    return samples.astype(np.float32) / 32768.0


def _decoded_pieces(av: object, data: bytes, rate: int) -> Iterator[np.ndarray]:
    """s16 mono pieces at ``rate``; frames FFmpeg cannot decode are skipped, as browsers' first
    WebM cluster sometimes holds one."""
    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=rate)  # type: ignore[attr-defined]
    with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:  # type: ignore[attr-defined]
        stream = container.streams.audio[0]
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:  # type: ignore[attr-defined]
                continue
            for frame in frames:
                frame.pts = None
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def wav_header(sample_rate: int, data_bytes: int = STREAMING_DATA_SIZE, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header; the default size marks a stream whose length is not known yet."""
    block = channels * bits // 8
    riff_size = min(36 + data_bytes, 0xFFFFFFFF)
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, bits)
        + b"data" + struct.pack("<I", data_bytes)
    )


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """A whole WAV file of s16le mono ``pcm``."""
    return wav_header(sample_rate, len(pcm)) + pcm


def pcm_of_wav(wav: bytes) -> tuple[bytes, int]:
    """(s16le PCM, sample rate) of a PCM WAV, reading chunk by chunk and trusting no declared size
    beyond the bytes present (espeak-ng writes a placeholder size when writing to a pipe)."""
    if len(wav) < 12 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos, rate = 12, 0
    while pos + 8 <= len(wav):
        chunk, size = wav[pos:pos + 4], struct.unpack("<I", wav[pos + 4:pos + 8])[0]
        body = pos + 8
        if chunk == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", wav[body:body + 16])
            if fmt != 1 or channels != 1 or bits != 16:
                raise ValueError(f"unsupported WAV format {fmt}/{channels} ch/{bits} bit")
        elif chunk == b"data":
            if not rate:
                raise ValueError("WAV data before its format")
            end = min(len(wav), body + size)
            return wav[body:end - (end - body) % 2], rate
        pos = body + size + (size & 1)
    raise ValueError("WAV file without data")
