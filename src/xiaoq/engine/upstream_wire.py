"""The OpenAI wire format as the upstream engine speaks it: the request's sampling fields, the
streamed events (``data: {...}`` lines up to ``data: [DONE]``) and the usage they report.

Servers differ in what they report: OpenAI-style ``usage`` with
``prompt_tokens_details.cached_tokens`` (vLLM, XiaoQ, newer llama-server) or llama-server's
``timings`` (``cache_n``, ``prompt_n``); both are read.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, AsyncIterator

import httpx

from .types import SamplingParams, Timings, Usage


class UpstreamFailed(Exception):
    """An upstream failed before sending any text: the request may go to the next one."""


def sampling_fields(p: SamplingParams) -> dict[str, Any]:
    """OpenAI fields plus the llama-server ones it understands (others ignore them)."""
    out: dict[str, Any] = {"temperature": p.temperature, "top_p": p.top_p}
    if p.seed is not None:
        out["seed"] = p.seed
    if p.stop:
        out["stop"] = list(p.stop)
    if p.frequency_penalty:
        out["frequency_penalty"] = p.frequency_penalty
    if p.presence_penalty:
        out["presence_penalty"] = p.presence_penalty
    if p.repeat_penalty != 1.0:
        out["repeat_penalty"] = p.repeat_penalty
    if p.top_k:
        out["top_k"] = p.top_k
    if p.min_p:
        out["min_p"] = p.min_p
    if p.logit_bias:
        out["logit_bias"] = {str(k): v for k, v in p.logit_bias.items()}
    if p.ignore_eos:
        out["ignore_eos"] = True
    return out


def read_usage(event: dict[str, Any], usage: Usage, timings: Timings) -> None:
    """Usage (OpenAI, with ``prompt_tokens_details.cached_tokens``) or llama-server's ``timings``."""
    u = event.get("usage")
    if isinstance(u, dict):
        usage.prompt_tokens = int(u.get("prompt_tokens") or usage.prompt_tokens)
        usage.completion_tokens = int(u.get("completion_tokens") or usage.completion_tokens)
        details = u.get("prompt_tokens_details") or {}
        if details.get("cached_tokens") is not None:
            usage.cached_tokens = int(details["cached_tokens"])
    t = event.get("timings")
    if isinstance(t, dict):
        if "cache_n" in t and not (isinstance(u, dict) and (u.get("prompt_tokens_details") or {}).get("cached_tokens") is not None):
            usage.cached_tokens = int(t["cache_n"])
        timings.prompt_ms = float(t.get("prompt_ms") or timings.prompt_ms)
        timings.decode_ms = float(t.get("predicted_ms") or timings.decode_ms)
        timings.prompt_tokens_evaluated = int(t.get("prompt_n") or timings.prompt_tokens_evaluated)


DONE: dict[str, Any] = {}


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of an OpenAI-style event stream; ``[DONE]`` yields :data:`DONE`."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            yield DONE
            return
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            raise UpstreamFailed(f"not JSON in the stream: {payload[:80]!r}") from None
        if isinstance(event, dict):
            yield event


def is_uuid(text: str) -> bool:
    """Only UUIDs are passed on as X-Request-Id: llama-cpp-python's server answers any other form
    with HTTP 400 (starlette-context validates it)."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
