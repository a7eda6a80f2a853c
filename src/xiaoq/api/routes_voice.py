"""Voice routes in the shapes OpenAI clients speak: ``POST /v1/audio/transcriptions`` (multipart
upload → text) and ``POST /v1/audio/speech`` (text → audio bytes, streamed sentence by sentence).

All speech work happens in :class:`~xiaoq.voice.service.VoiceService` on its own low-priority
threads; these handlers only parse, check and frame, so the event loop that streams other users'
tokens is never blocked by a model.
"""

from __future__ import annotations

from typing import Annotated, Any, AsyncIterator, Optional

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from xiaoq.api.body_limits import UPLOAD_BODY
from xiaoq.errors import InvalidRequest
from xiaoq.voice.audio import wav_bytes, wav_header
from xiaoq.voice.service import VoiceService

router = APIRouter(tags=["voice"])

SPEECH_FORMATS = ("wav", "pcm")
TRANSCRIPT_FORMATS = ("json", "text")


def get_voice(request: Request) -> VoiceService:
    return request.app.state.voice


VoiceDep = Annotated[VoiceService, Depends(get_voice)]


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidRequest(f"{name} {value!r} is not supported: use one of {', '.join(allowed)}.", code="unsupported_format", param=name)
    return value


@router.post(
    "/v1/audio/transcriptions",
    response_model=None,
    openapi_extra=UPLOAD_BODY,
    responses={200: {"content": {"application/json": {}, "text/plain": {}}}},
)
async def transcriptions(
    voice: VoiceDep,
    file: Annotated[UploadFile, File(description="Audio as browsers record it: WAV, WebM/Opus, Ogg, MP3, ...")],
    language: Annotated[Optional[str], Form(max_length=16)] = None,
    response_format: Annotated[str, Form(max_length=16)] = "json",
    model: Annotated[Optional[str], Form(max_length=200)] = None,
) -> Response:
    """``{"text", "language", "duration", "timings"}``; ``language`` (``zh``, ``en``, ...) is
    optional: a multilingual model detects it. ``model`` is accepted and ignored (one ASR model)."""
    fmt = _one_of("response_format", response_format, TRANSCRIPT_FORMATS)
    voice.check_language(language)  # a 400 before reading the upload when the model cannot do it
    transcript = await voice.transcribe(await file.read(), language)
    if fmt == "text":
        return PlainTextResponse(transcript.text)
    body: dict[str, Any] = {"text": transcript.text, "language": transcript.language, "duration": transcript.duration, "timings": transcript.timings}
    return JSONResponse(body)


class SpeechRequest(BaseModel):
    """OpenAI's speech request; ``voice`` also takes a language code (``zh``, ``en``)."""

    model_config = ConfigDict(extra="ignore")

    input: str = Field(..., max_length=20000)
    voice: Optional[str] = Field(None, max_length=200)
    response_format: str = Field("wav", max_length=16)
    speed: float = Field(1.0, ge=0.25, le=4.0)
    model: Optional[str] = Field(None, max_length=200)


_AUDIO = {"schema": {"type": "string", "format": "binary"}}


@router.post("/v1/audio/speech", response_model=None, responses={200: {"description": "WAV, or bare s16le samples for pcm", "content": {"audio/wav": _AUDIO, "audio/L16": _AUDIO}}})
async def speech(body: SpeechRequest, voice: VoiceDep) -> Response:
    """Audio of ``input``. One sentence: a complete WAV. Several: a WAV whose header leaves the
    length open, then each sentence's samples as soon as they are synthesized. ``pcm`` is the bare
    s16le mono samples (rate in ``X-Sample-Rate``)."""
    fmt = _one_of("response_format", body.response_format, SPEECH_FORMATS)
    chosen, pieces = voice.prepare_speech(body.input, body.voice)
    audio = voice.speak(pieces, chosen, body.speed)
    first = await anext(audio)  # engine errors become a JSON error, not a broken stream
    headers = {"X-Sample-Rate": str(chosen.sample_rate), "X-Voice": chosen.name}
    media = "audio/wav" if fmt == "wav" else "audio/L16"
    if len(pieces) == 1:
        return Response(wav_bytes(first, chosen.sample_rate) if fmt == "wav" else first, media_type=media, headers=headers)

    async def stream() -> AsyncIterator[bytes]:
        if fmt == "wav":
            yield wav_header(chosen.sample_rate)
        yield first
        async for pcm in audio:
            yield pcm

    return StreamingResponse(stream(), media_type=media, headers=headers)
