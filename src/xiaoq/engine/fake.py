"""A scripted engine with no llama.cpp, for fast tests of the layers above the engine.

It keeps the real engine's observable contract (see :mod:`xiaoq.engine.types`): a load step that
flips :attr:`ready`, a bounded admission queue that raises :class:`~xiaoq.errors.Busy`, a context
check that raises :class:`~xiaoq.errors.ContextLengthExceeded`, ``max_tokens`` ending with
``"length"``, stop strings, cancellation between "tokens", usage with cached prefix tokens, and
timings. Tokens are characters (a ChatML special marker counts as one), so counts are predictable.

Replies are scripted like simonw/llm's mock model: tests :meth:`FakeEngine.enqueue` them (or pass
``replies=``); with none queued the engine echoes the last user message.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional, Union

from xiaoq.config import Settings
from xiaoq.engine.types import (
    ChatMessage,
    Generation,
    GenerationRequest,
    GenerationResult,
    Timings,
    Usage,
)
from xiaoq.errors import Busy, ContextLengthExceeded, ModelError, ModelLoading

#: Token ids of the ChatML markers (outside the range of any character code point).
IM_START = 0x110000
IM_END = 0x110001


@dataclass
class FakeReply:
    """A scripted reply: stream ``text``; when ``error`` is set, fail with it after the text."""

    text: str
    error: Optional[str] = None


Reply = Union[str, FakeReply]


class FakeEngine:
    """Engine protocol implementation that streams scripted text, one character per token.

    ``delay`` is the pause before each token (lets tests disconnect mid-answer); ``load_delay`` is how
    long :meth:`start` takes; ``load_error`` makes :meth:`start` fail with :class:`ModelError`.
    Every submitted request is kept in :attr:`requests` so tests can inspect the prompt messages.
    """

    def __init__(
        self,
        settings: Settings,
        replies: Optional[list[Reply]] = None,
        delay: float = 0.0,
        *,
        load_delay: float = 0.0,
        load_error: Optional[str] = None,
        model_name: str = "fake-model",
    ):
        self.settings = settings
        self.model_name = model_name
        self.n_ctx = settings.ctx
        self.delay = delay
        self.load_delay = load_delay
        self.load_error = load_error
        self.replies: deque[Reply] = deque(replies or [])
        self.requests: list[GenerationRequest] = []
        self.generations: list[Generation] = []
        self._ready = False
        self._closed = False
        self._slots = settings.parallel
        self._queue_limit = settings.queue
        self._active = 0
        self._waiting: deque[Generation] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_prompt: list[int] = []
        # Same keys as LlamaEngine.stats(), so /metrics tests over the fake mean something.
        self._counters = {
            "requests_total": 0,
            "requests_rejected_total": 0,
            "tokens_generated_total": 0,
            "prompt_tokens_evaluated_total": 0,
            "prompt_tokens_cached_total": 0,
        }
        self._finished = {"stop": 0, "length": 0, "cancelled": 0, "error": 0}

    # ---- scripting --------------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        self.replies.extend(replies)

    # ---- Engine protocol ----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        if self.load_delay:
            await asyncio.sleep(self.load_delay)
        if self.load_error:
            raise ModelError(self.load_error)
        self._ready = True

    async def close(self) -> None:
        self._closed = True
        self._ready = False
        for gen in self.generations:
            gen.cancel()
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def tokenize(self, text: str) -> list[int]:
        return [ord(ch) for ch in text]

    def render(self, messages: list[ChatMessage]) -> list[int]:
        """ChatML as tokens: the markers are one token each, everything else one per character."""
        out: list[int] = []
        for m in messages:
            out += [IM_START, *self.tokenize(f"{m['role']}\n{m['content']}"), IM_END, ord("\n")]
        out += [IM_START, *self.tokenize("assistant\n")]
        return out

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self.render(messages))

    def submit(self, request: GenerationRequest) -> Generation:
        if not self._ready:
            raise ModelLoading()
        prompt = self.tokenize(request.prompt) if request.prompt is not None else self.render(request.messages)
        max_tokens = request.sampling.max_tokens
        if len(prompt) + max_tokens > self.n_ctx:
            raise ContextLengthExceeded(len(prompt), max_tokens, self.n_ctx)
        if self._active + len(self._waiting) >= self._slots + self._queue_limit:
            self._counters["requests_rejected_total"] += 1
            raise Busy()
        gen = Generation(prompt_tokens=len(prompt))
        self.requests.append(request)
        self.generations.append(gen)
        self._counters["requests_total"] += 1
        self._waiting.append(gen)
        reply = self.replies.popleft() if self.replies else self._echo(request)
        task = asyncio.get_running_loop().create_task(self._run(gen, request, prompt, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return gen

    def stats(self) -> dict[str, Any]:
        return {
            "ready": int(self._ready),
            "slots_total": self._slots,
            "slots_active": self._active,
            "queue_depth": len(self._waiting),
            "queue_capacity": self._queue_limit,
            **self._counters,
            "requests_finished_total": dict(self._finished),
        }

    # ---- worker -----------------------------------------------------------------------------
    def _finish(self, gen: Generation, result: GenerationResult) -> None:
        self._finished[result.finish_reason] += 1
        gen.finish(result)

    @staticmethod
    def _echo(request: GenerationRequest) -> str:
        users = [m["content"] for m in request.messages if m["role"] == "user"]
        return users[-1] if users else (request.prompt or "")

    async def _run(self, gen: Generation, request: GenerationRequest, prompt: list[int], reply: Reply) -> None:
        t0 = time.perf_counter()
        timings = Timings()
        usage = Usage(prompt_tokens=len(prompt))
        admitted = False
        try:
            # FIFO admission; a request cancelled while waiting leaves the queue at once.
            while self._waiting[0] is not gen or self._active >= self._slots:
                if gen.cancelled or self._closed:
                    self._finish(gen, GenerationResult("cancelled", usage, timings))
                    return
                await asyncio.sleep(0.002)
            self._waiting.popleft()
            self._active += 1
            admitted = True
            timings.queue_ms = (time.perf_counter() - t0) * 1000
            cached = 0
            for a, b in zip(prompt, self._last_prompt):
                if a != b:
                    break
                cached += 1
            self._last_prompt = list(prompt)
            usage.cached_tokens = cached
            timings.prompt_tokens_evaluated = len(prompt) - cached
            self._counters["prompt_tokens_evaluated_total"] += len(prompt) - cached
            self._counters["prompt_tokens_cached_total"] += cached

            script = reply if isinstance(reply, FakeReply) else FakeReply(reply)
            text, finish = script.text, "stop"
            for s in request.sampling.stop:
                if s and s in text:
                    text = text[: text.index(s)]
            if len(text) > request.sampling.max_tokens:
                text, finish = text[: request.sampling.max_tokens], "length"
            t_first = t_prompt = time.perf_counter()
            timings.prompt_ms = (t_prompt - t0) * 1000 - timings.queue_ms
            for i, ch in enumerate(text):
                if self.delay:
                    await asyncio.sleep(self.delay)
                if gen.cancelled or self._closed:
                    finish = "cancelled"
                    break
                gen.emit(ch)
                usage.completion_tokens += 1
                if i == 0:
                    t_first = time.perf_counter()
                    timings.ttft_ms = (t_first - t0) * 1000
            timings.decode_ms = (time.perf_counter() - t_first) * 1000
            self._counters["tokens_generated_total"] += usage.completion_tokens
            if finish != "cancelled" and script.error:
                self._finish(gen, GenerationResult("error", usage, timings, error=script.error))
            else:
                self._finish(gen, GenerationResult(finish, usage, timings))  # type: ignore[arg-type]
        except BaseException as exc:  # the task was cancelled (loop shutdown) or a bug: never hang a reader
            self._finish(gen, GenerationResult("error", usage, timings, error=f"fake engine: {exc!r}"))
            if not isinstance(exc, Exception):
                raise
        finally:
            if admitted:
                self._active -= 1
            elif gen in self._waiting:
                self._waiting.remove(gen)
