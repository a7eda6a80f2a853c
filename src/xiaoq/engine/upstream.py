"""The Engine protocol over OpenAI-compatible servers (llama-server, vLLM, another XiaoQ).

With ``--upstream URL`` XiaoQ keeps what is XiaoQ's (conversations, summaries, UI, auth, metrics)
and sends generation to those servers instead of loading a model: the routes and the chat layer
see the same :class:`~xiaoq.engine.types.Engine` as with the local engine.

A request streams ``/v1/chat/completions`` from the first upstream of its affinity order
(:mod:`.upstream_pool`). A failure before the first piece of text (refused connection, 5xx, a
stream that ends or stalls past ``--upstream-timeout`` without text) is retried on the next
upstream: nothing has reached the client yet, so the retry is invisible. After the first piece
it is not: the reply ends with ``error`` and its partial text, as with the local engine.
Cancelling the :class:`Generation` cancels the streaming task, which closes the upstream's HTTP
stream, so the upstream stops generating too.

Token counts for budgets and summaries come from the GGUF's vocabulary when ``--model`` names one
(exact, local, :mod:`.vocab`), else from the upstream's tokenize endpoint (one HTTP call per text,
with a fixed per-message allowance for the chat template's markers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Optional

import httpx

from ..config import Settings
from ..errors import Busy, ContextLengthExceeded, InvalidRequest, ModelError, ModelLoading, NotImplementedHere
from ..logs import request_id_var
from .types import ChatMessage, Generation, GenerationRequest, GenerationResult, SamplingParams, Timings, Usage
from .upstream_pool import Upstream, UpstreamPool, affinity_key
from .upstream_tokens import RemoteTokenizer, discover_context, discover_model
from .upstream_wire import DONE, UpstreamFailed, is_uuid, read_usage, sampling_fields, sse_events

log = logging.getLogger(__name__)

#: How often the upstreams are probed on /v1/models (seconds).
PROBE_INTERVAL_S = 2.0
#: Chat-template markers per message when counting without the model's vocabulary (ChatML: 4-5).
MESSAGE_OVERHEAD_TOKENS = 5


class UpstreamEngine:
    """Engine whose generation happens on OpenAI-compatible servers."""

    def __init__(self, settings: Settings, *, vocab_path: Optional[Path] = None):
        self.settings = settings
        self.pool = UpstreamPool(list(settings.upstream))
        self.vocab_path = vocab_path
        self.model_name = vocab_path.stem if vocab_path else "upstream"
        self.n_ctx = settings.ctx
        self._vocab: Any = None
        self._remote: Optional[RemoteTokenizer] = None
        self._client: Optional[httpx.AsyncClient] = None
        self._probe_task: Optional[asyncio.Task[None]] = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._continues: dict[str, Optional[bool]] = {}  # by upstream URL: can it continue a reply?
        self._ready = False
        self._never_fails = asyncio.Event()
        self.counters = {"requests_total": 0, "requests_rejected_total": 0, "tokens_generated_total": 0,
                         "prompt_tokens_cached_total": 0, "prompt_tokens_evaluated_total": 0, "upstream_retries_total": 0}
        self.finished: dict[str, int] = {"stop": 0, "length": 0, "cancelled": 0, "error": 0}

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def tokenizer_id(self) -> str:
        if self._vocab is not None:
            return str(self._vocab.tokenizer_id)
        return f"upstream|{self.model_name}"

    @property
    def failure(self) -> Optional[str]:
        """Always None: an upstream that dies is routed around, it does not stop this process."""
        return None

    async def wait_failure(self) -> str:
        await self._never_fails.wait()
        return "unreachable"

    def _headers(self) -> dict[str, str]:
        key = self.settings.upstream_api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def start(self) -> None:
        """Wait until an upstream answers (``/health`` says loading until then), then learn the
        model name and context size from it and load the vocabulary (or find a tokenize endpoint)."""
        timeout = httpx.Timeout(connect=5.0, read=self.settings.upstream_timeout, write=30.0, pool=10.0)
        self._client = httpx.AsyncClient(timeout=timeout, headers=self._headers(), limits=httpx.Limits(max_keepalive_connections=32))
        while not await self._probe_all():
            await asyncio.sleep(PROBE_INTERVAL_S)
        first = next(u for u in self.pool.upstreams if u.up)
        if self.vocab_path is not None:
            from .vocab import Vocab

            self._vocab = await asyncio.to_thread(Vocab, self.vocab_path)
            self.model_name = self._vocab.name
        else:
            self.model_name = await discover_model(self._client, first.url) or self.model_name
            self._remote = await RemoteTokenizer.find(first.url, self._headers())
        if "ctx" not in self.settings.model_fields_set:
            self.n_ctx = await discover_context(self._client, first.url) or self.n_ctx
        self._probe_task = asyncio.create_task(self._probe_forever(), name="xiaoq-upstream-probe")
        self._ready = True
        log.info("upstreams %s: model %s, %d tokens per conversation", ", ".join(u.url for u in self.pool.upstreams), self.model_name, self.n_ctx)

    async def close(self) -> None:
        self._ready = False
        if self._probe_task is not None:
            self._probe_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._client is not None:
            await self._client.aclose()
        if self._remote is not None:
            self._remote.close()
        if self._vocab is not None:
            self._vocab.close()

    # ---- health -------------------------------------------------------------------------------
    async def _probe(self, upstream: Upstream) -> bool:
        assert self._client is not None
        try:
            r = await self._client.get(upstream.url + "/v1/models", timeout=PROBE_INTERVAL_S)
            ok = r.status_code == 200
            data = r.json().get("data") if ok else None
            if data and isinstance(data[0], dict):
                upstream.model = data[0].get("id") or upstream.model
        except (httpx.HTTPError, ValueError, AttributeError):
            ok = False
        if ok != upstream.up:
            log.warning("upstream %s is %s", upstream.url, "back" if ok else "down")
        self.pool.probed(upstream, ok)
        return ok

    async def _probe_all(self) -> bool:
        results = await asyncio.gather(*(self._probe(u) for u in self.pool.upstreams))
        return any(results)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            await self._probe_all()

    # ---- tokens -------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        if self._vocab is not None:
            return self._vocab.tokenize(text)
        if self._remote is not None:
            return self._remote.tokenize(text)
        raise ModelLoading()

    def count_prompt_tokens(self, messages: list[ChatMessage], continue_last: bool = False) -> int:
        msgs = messages  # exactly these: the chat layer decides the system prompt
        if self._vocab is not None:
            return int(self._vocab.count_prompt(msgs, continue_last))
        return sum(_content_tokens(m, self.tokenize) + MESSAGE_OVERHEAD_TOKENS for m in msgs) + 3

    async def acount_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return await asyncio.to_thread(self.count_prompt_tokens, messages)

    def _request_tokens(self, request: GenerationRequest) -> int:
        if request.prompt is not None:
            return len(self._vocab.tokenize(request.prompt, parse_special=True)) if self._vocab is not None else len(self.tokenize(request.prompt))
        return self.count_prompt_tokens(request.messages, request.continue_last)

    # ---- requests -----------------------------------------------------------------------------
    async def submit(self, request: GenerationRequest) -> Generation:
        if not self._ready:
            raise ModelLoading()
        if request.prompt is None and not request.messages:
            raise InvalidRequest("the prompt is empty")
        if request.continue_last and (not request.messages or request.messages[-1]["role"] != "assistant"):
            raise InvalidRequest("Only an assistant message can be continued.", code="nothing_to_continue")
        key = affinity_key(request.affinity_key, [dict(m) for m in request.messages])
        if request.continue_last:
            await self._check_continues(self.pool.order(key)[0])
        max_tokens = max(1, request.sampling.max_tokens)  # capped by the chat layer's policy
        # Counted off the event loop (locally from the vocabulary, or by the upstream's tokenizer):
        # what cannot fit is refused before streaming, as by the local engine.
        prompt_tokens = await asyncio.to_thread(self._request_tokens, request)
        if prompt_tokens + max_tokens > self.n_ctx:
            raise ContextLengthExceeded(prompt_tokens, max_tokens, self.n_ctx)
        if len(self._tasks) >= self.settings.parallel * len(self.pool.upstreams) + self.settings.queue:
            self.counters["requests_rejected_total"] += 1
            raise Busy()
        gen = Generation(asyncio.get_running_loop(), prompt_tokens=prompt_tokens)
        self.counters["requests_total"] += 1
        task = asyncio.get_running_loop().create_task(self._run(gen, request, max_tokens, key, request_id_var.get()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return gen

    async def _check_continues(self, upstream: Upstream) -> None:
        """Refuse (501) to continue a reply on an upstream that would start a new one instead:
        llama-cpp-python's server, say, closes a final assistant message and opens another,
        so the "continuation" would be a second answer glued to the first."""
        if self._continues.get(upstream.url) is None:
            self._continues[upstream.url] = await self._probe_continues(upstream)
        if self._continues[upstream.url] is False:
            raise NotImplementedHere(
                f"The generation server {upstream.url} cannot continue a reply (it answers a final assistant message with a new one); "
                "llama-server and vLLM can.",
                code="continue_unsupported",
            )

    async def _probe_continues(self, upstream: Upstream) -> Optional[bool]:
        """Asked once per upstream with a one-token request: the prompt tokens it reports against
        the open prompt's count from the model's vocabulary (a closed message adds an end of turn
        and a new assistant cue). None (ask again next time) without the vocabulary, or when the
        answer says nothing."""
        if self._vocab is None or self._client is None:
            return None
        probe = GenerationRequest(messages=[{"role": "user", "content": "1"}, {"role": "assistant", "content": "2"}],
                                  sampling=SamplingParams(temperature=0.0, max_tokens=1), continue_last=True)
        path, body = self._body(probe, 1, upstream)
        body.update(stream=False)
        body.pop("stream_options", None)
        try:
            r = await self._client.post(upstream.url + path, json=body)
            reported = int(r.json()["usage"]["prompt_tokens"])
        except Exception:  # unreachable or no usage: the request itself will tell
            return None
        return reported <= await asyncio.to_thread(self._vocab.count_prompt, probe.messages, True) + 1

    def stats(self) -> dict[str, Any]:
        return {
            "ready": int(self._ready),
            "slots_total": self.settings.parallel * len(self.pool.upstreams),
            "slots_active": sum(u.in_flight for u in self.pool.upstreams),
            "queue_depth": 0,
            **self.counters,
            "requests_finished_total": dict(self.finished),
            **self.pool.stats(),
        }

    # ---- one generation -------------------------------------------------------------------------
    async def _run(self, gen: Generation, request: GenerationRequest, max_tokens: int, key: str, rid: str) -> None:
        started = time.perf_counter()
        usage = Usage(prompt_tokens=gen.prompt_tokens)
        timings = Timings()
        state = _Progress()
        last_error = "no upstream is available"
        try:
            for attempt, upstream in enumerate(self.pool.order(key)):
                if attempt:
                    self.counters["upstream_retries_total"] += 1
                try:
                    await self._attempt(upstream, gen, request, max_tokens, rid, usage, timings, state, started)
                    return self._finish(gen, state.finish_reason or "stop", usage, timings)
                except UpstreamFailed as e:
                    last_error = f"{upstream.url}: {e}"
                    log.warning("upstream %s failed before the first token (%s); trying the next", upstream.url, e)
                if gen.cancelled:
                    return self._finish(gen, "cancelled", usage, timings)
            self._finish(gen, "error", usage, timings, f"no upstream could answer (last: {last_error})")
        except asyncio.CancelledError:
            self._finish(gen, "cancelled", usage, timings)
        except _FailedMidStream as e:
            self._finish(gen, "error", usage, timings, str(e))
        except Exception as e:  # a bug must never leave a reader waiting
            log.exception("upstream generation failed")
            self._finish(gen, "error", usage, timings, f"{type(e).__name__}: {e}")

    async def _attempt(self, upstream: Upstream, gen: Generation, request: GenerationRequest, max_tokens: int, rid: str,
                       usage: Usage, timings: Timings, state: "_Progress", started: float) -> None:
        """Stream from one upstream, watching for cancellation; raises UpstreamFailed before text."""
        upstream.in_flight += 1
        upstream.counters["requests"] += 1
        stream = asyncio.ensure_future(self._stream(upstream, gen, request, max_tokens, rid, usage, timings, state, started))
        try:
            while not stream.done():
                await asyncio.wait({stream}, timeout=0.05)
                if gen.cancelled and not stream.done():
                    stream.cancel()  # leaves `async with client.stream(...)`: the connection closes
                    state.finish_reason = "cancelled"
            if stream.cancelled():
                return
            stream.result()
            self.pool.succeeded(upstream)
            upstream.counters["prompt_tokens"] += usage.prompt_tokens
            upstream.counters["cached_tokens"] += usage.cached_tokens
        except UpstreamFailed:
            self.pool.failed(upstream)
            upstream.counters["retries_from"] += 1
            raise
        except _Refused:  # the request's fault, not the upstream's
            raise
        except _FailedMidStream:
            self.pool.failed(upstream)
            raise
        finally:
            if not stream.done():
                stream.cancel()
            upstream.in_flight -= 1

    async def _stream(self, upstream: Upstream, gen: Generation, request: GenerationRequest, max_tokens: int, rid: str,
                      usage: Usage, timings: Timings, state: "_Progress", started: float) -> None:
        assert self._client is not None
        path, body = self._body(request, max_tokens, upstream)
        headers = {"X-Request-Id": rid} if is_uuid(rid) else {}
        try:
            async with self._client.stream("POST", upstream.url + path, json=body, headers=headers) as r:
                if r.status_code >= 500 or r.status_code == 429:
                    raise UpstreamFailed(f"HTTP {r.status_code}")
                if r.status_code >= 400:
                    detail = (await r.aread()).decode("utf-8", "replace")[:300]
                    raise _Refused(f"the upstream refused the request: HTTP {r.status_code} {detail}")
                async for event in sse_events(r):
                    if event is DONE:
                        state.done = True
                        break
                    self._take(event, upstream, gen, usage, timings, state, started)
        except httpx.HTTPError as e:
            if not state.emitted:
                raise UpstreamFailed(f"{type(e).__name__}: {e}") from None
            raise _FailedMidStream(f"the upstream {upstream.url} failed mid-answer: {type(e).__name__}") from None
        if state.done or state.finish_reason is not None:
            return  # a complete answer (possibly empty: the model may end at once)
        if not state.emitted:
            raise UpstreamFailed("the stream ended without an answer")
        raise _FailedMidStream(f"the upstream {upstream.url} broke off the answer")

    def _take(self, event: dict[str, Any], upstream: Upstream, gen: Generation, usage: Usage, timings: Timings,
              state: "_Progress", started: float) -> None:
        """Apply one streamed chunk: text to the reader, finish reason, usage."""
        if "error" in event:
            message = str((event.get("error") or {}).get("message", event["error"]))
            if not state.emitted:
                raise UpstreamFailed(message)
            raise _FailedMidStream(f"the upstream failed mid-answer: {message}")
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
            if piece:
                now = time.perf_counter()
                if not state.emitted:
                    timings.ttft_ms = (now - started) * 1000
                    state.first_at = now
                state.emitted = True
                usage.completion_tokens += 1
                upstream.counters["tokens"] += 1
                gen.emit(piece)
            if choice.get("finish_reason"):
                state.finish_reason = str(choice["finish_reason"])  # an open set: passed on as the upstream said it
        read_usage(event, usage, timings)

    def _body(self, request: GenerationRequest, max_tokens: int, upstream: Upstream) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": upstream.model or self.model_name, "stream": True, "stream_options": {"include_usage": True},
                                "max_tokens": max_tokens, **sampling_fields(request.sampling), "cache_prompt": True}
        if request.prompt is not None:
            return "/v1/completions", {**body, "prompt": request.prompt}
        if request.continue_last:  # vLLM's spelling; llama-server leaves a final assistant message open itself (its assistant prefill, on unless --no-prefill-assistant)
            body.update(continue_final_message=True, add_generation_prompt=False)
        messages = [{"role": m["role"], "content": m["content"]} for m in request.messages]
        return "/v1/chat/completions", {**body, "messages": messages}

    def _finish(self, gen: Generation, reason: str, usage: Usage, timings: Timings, error: Optional[str] = None) -> None:
        if gen.cancelled and reason != "error":
            reason = "cancelled"
        self.finished[reason] = self.finished.get(reason, 0) + 1
        self.counters["tokens_generated_total"] += usage.completion_tokens
        self.counters["prompt_tokens_cached_total"] += usage.cached_tokens
        self.counters["prompt_tokens_evaluated_total"] += max(0, usage.prompt_tokens - usage.cached_tokens)
        gen.prompt_tokens = usage.prompt_tokens
        gen.finish(GenerationResult(reason, usage, timings, error=error))  # type: ignore[arg-type]


def _content_tokens(message: ChatMessage, tokenize: Any) -> int:
    known = message.get("tokens")
    return int(known) if known is not None else len(tokenize(str(message.get("content") or "")))


class _FailedMidStream(Exception):
    """A failure that must reach the client (text was already sent, or the request was refused)."""


class _Refused(_FailedMidStream):
    """The upstream answered 4xx: the request is at fault, so no retry and no breaker count."""


class _Progress:
    """What one generation has done so far, across attempts."""

    def __init__(self) -> None:
        self.emitted = False
        self.first_at: Optional[float] = None
        self.finish_reason: Optional[str] = None
        #: The stream's ``[DONE]`` arrived.
        self.done = False


def check_upstreams(urls: list[str]) -> None:
    """Refuse URLs that are not http(s) (one clear line at start-up)."""
    for url in urls:
        if not url.startswith(("http://", "https://")) or len(url) < 10:
            raise ModelError(f"--upstream {url!r}: give the server's base URL, e.g. http://10.0.0.5:8080")
