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
from collections import Counter, deque
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
from xiaoq.engine.loops import StreamGuard
from xiaoq.errors import Busy, ContextLengthExceeded, EngineError, InvalidRequest, ModelError, ModelLoading

#: Token ids of the ChatML markers (outside the range of any character code point).
IM_START = 0x110000
IM_END = 0x110001


@dataclass
class FakeReply:
    """A scripted reply: stream ``text``; when ``error`` is set, fail with it after the text;
    ``finish_reason`` ends it with that reason instead of "stop" (e.g. one the API does not know)."""

    text: str
    error: Optional[str] = None
    finish_reason: Optional[str] = None


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
        self._finished = {"stop": 0, "length": 0, "cancelled": 0, "error": 0, "repetition": 0}
        #: How often each text was tokenized (tests check stored counts are reused).
        self.tokenized: Counter[str] = Counter()
        self._failure: Optional[str] = None
        self._failed = asyncio.Event()

    # ---- scripting --------------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        self.replies.extend(replies)

    # ---- Engine protocol ----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready and self._failure is None

    @property
    def tokenizer_id(self) -> str:
        return f"{self.model_name}|chars"

    @property
    def failure(self) -> Optional[str]:
        return self._failure

    def fail(self, message: str) -> None:
        """Die as the real engine's worker can: every running and waiting request ends with an
        error, later ones are refused, :meth:`wait_failure` returns."""
        self._failure = message
        self._failed.set()
        for gen in self.generations:
            if not gen.done:
                self._finish(gen, GenerationResult("error", Usage(prompt_tokens=gen.prompt_tokens), Timings(), error=message))

    async def wait_failure(self) -> str:
        await self._failed.wait()
        assert self._failure is not None
        return self._failure

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
        self.tokenized[text] += 1
        return [ord(ch) for ch in text]

    def render(self, messages: list[ChatMessage], continue_last: bool = False) -> list[int]:
        """ChatML as tokens: the markers are one token each, everything else one per character.
        ``continue_last`` leaves the last (assistant) message open."""
        if continue_last and (not messages or messages[-1]["role"] != "assistant"):
            raise InvalidRequest("Only an assistant message can be continued.", code="nothing_to_continue")
        out: list[int] = []
        for i, m in enumerate(messages):
            out += [IM_START, *[ord(ch) for ch in f"{m['role']}\n"], *self.tokenize(m["content"])]
            if not (continue_last and i == len(messages) - 1):
                out += [IM_END, ord("\n")]
        if not continue_last:
            out += [IM_START, *[ord(ch) for ch in "assistant\n"]]
        return out

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        """``len(render(messages))``, taking a message's ``tokens`` for its content when given."""
        n = 1 + len("assistant\n")
        for m in messages:
            known = m.get("tokens")
            n += len(m["role"]) + 4 + (known if known is not None else len(self.tokenize(m["content"])))
        return n

    async def acount_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return self.count_prompt_tokens(messages)

    async def submit(self, request: GenerationRequest) -> Generation:
        if self._failure is not None:
            raise EngineError(f"The engine has stopped: {self._failure}")
        if not self._ready:
            raise ModelLoading()
        prompt = self.tokenize(request.prompt) if request.prompt is not None else self.render(request.messages, request.continue_last)
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
        self._finished[result.finish_reason] = self._finished.get(result.finish_reason, 0) + 1
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
            text, finish = script.text, script.finish_reason or "stop"
            for s in request.sampling.stop:
                if s and s in text:
                    text = text[: text.index(s)]
            if len(text) > request.sampling.max_tokens:
                text, finish = text[: request.sampling.max_tokens], "length"
            t_first = t_prompt = time.perf_counter()
            timings.prompt_ms = (t_prompt - t0) * 1000 - timings.queue_ms
            # The real guard over characters as tokens: a scripted loop ends as it would with llama.cpp.
            guard = StreamGuard(lambda t: chr(t).encode()) if request.sampling.loop_guard else None
            text_length = None
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
                text_length = guard.push(ord(ch), i + 1) if guard is not None else None
                if text_length is not None:
                    finish = "repetition"
                    break
            timings.decode_ms = (time.perf_counter() - t_first) * 1000
            self._counters["tokens_generated_total"] += usage.completion_tokens
            if finish != "cancelled" and script.error:
                self._finish(gen, GenerationResult("error", usage, timings, error=script.error))
            else:
                self._finish(gen, GenerationResult(finish, usage, timings, text_length=text_length))  # type: ignore[arg-type]
        except BaseException as exc:  # the task was cancelled (loop shutdown) or a bug: never hang a reader
            self._finish(gen, GenerationResult("error", usage, timings, error=f"fake engine: {exc!r}"))
            if not isinstance(exc, Exception):
                raise
        finally:
            if admitted:
                self._active -= 1
            elif gen in self._waiting:
                self._waiting.remove(gen)
