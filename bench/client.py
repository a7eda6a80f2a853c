"""One streaming OpenAI chat client for both servers, recording when every token arrives.

XiaoQ and llama-server are measured through exactly this code, so client overhead (JSON parsing,
SSE framing, httpx) is identical on both sides and cancels out of the ratios.

Time to first token (TTFT) is from just before the request is written to the first chunk that
carries generated text. Token counts come from the server's final ``usage`` (chunks can merge
tokens, e.g. an incomplete UTF-8 character), and decode speed uses the span between the first
and the last text chunk so prefill time is not counted as decode time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import httpx

from bench.stats import gaps

REQUEST_TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=300.0)


@dataclass
class StreamResult:
    """What one streamed chat completion looked like from the client's side."""

    t_send: float
    t_first: Optional[float] = None
    chunk_times: list[float] = field(default_factory=list)
    t_end: Optional[float] = None
    text: str = ""
    finish_reason: Optional[str] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    cached_tokens: Optional[int] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.t_first is not None

    @property
    def ttft(self) -> Optional[float]:
        return None if self.t_first is None else self.t_first - self.t_send

    @property
    def n_tokens(self) -> int:
        """Generated tokens: the server's count when it gave one, else the chunks seen."""
        return self.completion_tokens if self.completion_tokens is not None else len(self.chunk_times)

    @property
    def decode_tps(self) -> Optional[float]:
        """Tokens per second after the first token (the steady decode rate)."""
        if len(self.chunk_times) < 2 or self.n_tokens < 2:
            return None
        span = self.chunk_times[-1] - self.chunk_times[0]
        return (self.n_tokens - 1) / span if span > 0 else None

    @property
    def token_gaps(self) -> list[float]:
        return gaps(self.chunk_times)

    @property
    def prompt_evaluated(self) -> Optional[int]:
        """Prompt tokens the server had to evaluate (not served from its KV cache)."""
        if self.prompt_tokens is None:
            return None
        return self.prompt_tokens - (self.cached_tokens or 0)


def chat_body(
    messages: list[dict[str, str]],
    max_tokens: int,
    *,
    extra: Optional[dict[str, Any]] = None,
    seed: int = 1234,
) -> dict[str, Any]:
    """The request both servers get: greedy sampling, a fixed seed, usage in the stream.

    ``extra`` carries the side's way of running a reply to ``max_tokens`` (``ignore_eos`` or a
    ``logit_bias`` against the end-of-generation tokens), so both sides generate equal lengths.
    """
    body: dict[str, Any] = {
        "model": "bench",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body.update(extra or {})
    return body


async def stream_chat(client: httpx.AsyncClient, base_url: str, body: dict[str, Any], *,
                      on_chunk: Optional[Callable[[StreamResult], None]] = None,
                      timeout: httpx.Timeout = REQUEST_TIMEOUT) -> StreamResult:
    """POST /v1/chat/completions with stream=true and time every text chunk.

    ``on_chunk`` sees the partial result after every text chunk (scenario 5 uses it to send the
    long prompt once the running stream is under way). ``timeout``: a request queued behind long
    prompts (scenario 11) may wait longer than the default's 300 s for its first byte.

    Never raises for a server-side failure: the error lands in ``StreamResult.error`` so one bad
    request shows up as a missing figure instead of aborting the whole benchmark.
    """
    res = StreamResult(t_send=time.perf_counter())
    try:
        async with client.stream("POST", f"{base_url}/v1/chat/completions", json=body,
                                 timeout=timeout) as resp:
            if resp.status_code != 200:
                raw = await resp.aread()
                res.error = f"HTTP {resp.status_code}: {raw[:300].decode('utf-8', 'replace')}"
                return res
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                now = time.perf_counter()
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError:
                    continue
                if "error" in chunk:
                    res.error = json.dumps(chunk["error"])[:300]
                    break
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    piece = delta.get("content") or delta.get("reasoning_content") or ""
                    if piece:
                        if res.t_first is None:
                            res.t_first = now
                        res.chunk_times.append(now)
                        res.text += piece
                        if on_chunk is not None:
                            on_chunk(res)
                    if choice.get("finish_reason"):
                        res.finish_reason = choice["finish_reason"]
                usage = chunk.get("usage")
                if usage:
                    res.prompt_tokens = usage.get("prompt_tokens")
                    res.completion_tokens = usage.get("completion_tokens")
                    details = usage.get("prompt_tokens_details") or {}
                    res.cached_tokens = details.get("cached_tokens")
    except (httpx.HTTPError, OSError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        res.t_end = time.perf_counter()
    return res
