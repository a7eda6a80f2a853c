"""Request -> :class:`GenerationRequest`, with the server's defaults and caps from :class:`Settings`.

Ranges (temperature, top_p, ...) are validated by the request models; here the server's defaults
fill what the client left out, and ``max_tokens`` follows the one policy of ``chat/policy.py``.
"""

from __future__ import annotations

from typing import Optional, Union

from xiaoq.chat import policy
from xiaoq.config import Settings
from xiaoq.engine.types import ChatMessage, Engine, GenerationRequest, SamplingParams

MAX_STOP_SEQUENCES = 8
MAX_STOP_LENGTH = 64


def stop_list(stop: Union[str, list[str], None]) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


async def generation_request(
    settings: Settings,
    engine: Engine,
    messages: list[ChatMessage],
    *,
    temperature: Optional[float] = None,
    top_p: Optional[float] = None,
    max_tokens: Optional[int] = None,
    seed: Optional[int] = None,
    stop: Union[str, list[str], None] = None,
    frequency_penalty: Optional[float] = None,
    presence_penalty: Optional[float] = None,
    min_p: Optional[float] = None,
    repeat_penalty: Optional[float] = None,
    logit_bias: Optional[dict[int, float]] = None,
    ignore_eos: bool = False,
    loop_guard: Optional[bool] = None,
    language_check: Optional[bool] = None,
) -> GenerationRequest:
    room = engine.n_ctx - await engine.acount_prompt_tokens(messages) if max_tokens is None else None
    sampling = SamplingParams(
        temperature=settings.temperature if temperature is None else temperature,
        top_p=settings.top_p if top_p is None else top_p,
        max_tokens=policy.max_tokens(settings, max_tokens, room),
        seed=settings.seed if seed is None else seed,
        stop=stop_list(stop),
        frequency_penalty=frequency_penalty or 0.0,
        presence_penalty=presence_penalty or 0.0,
        min_p=settings.min_p if min_p is None else min_p,
        repeat_penalty=settings.repeat_penalty if repeat_penalty is None else repeat_penalty,
        logit_bias=dict(logit_bias or {}),
        ignore_eos=ignore_eos,
        loop_guard=settings.loop_guard if loop_guard is None else loop_guard,
        language_check=settings.language_check if language_check is None else language_check,
    )
    return GenerationRequest(messages=messages, sampling=sampling)
