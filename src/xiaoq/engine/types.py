"""The engine's contract with everything above it.

Only ``engine/`` imports ``llama_cpp``. The API, chat logic and CLI speak in chat messages, token
counts and :class:`Generation` streams of text, so a fake engine (``engine/fake.py``) can drive fast
API tests and a remote OpenAI-compatible upstream could replace the local engine later.

A :class:`Generation` is produced by a worker (the llama.cpp scheduler thread, or the fake engine's
task) and consumed by one asyncio reader. The worker calls :meth:`Generation.emit` / :meth:`finish`
from any thread; the reader iterates text pieces with ``async for`` and then reads
:attr:`Generation.result`. :meth:`Generation.cancel` is safe from any thread and is checked by the
worker between decode steps and prefill chunks.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional, Protocol, TypedDict, runtime_checkable

#: Why a generation ended. An open set: engines may add reasons (a repetition detector, an
#: upstream's ``content_filter``), so every consumer handles the known ones below and treats any
#: other as a normal end of the text (the API layers pass it on as it is, or map it, see
#: ``api/routes_openai.py``).
FinishReason = str
STOP: FinishReason = "stop"
LENGTH: FinishReason = "length"
CANCELLED: FinishReason = "cancelled"
ERROR: FinishReason = "error"
#: The loop guard ended a reply that had become a runaway repetition (``engine/loops.py``).
REPETITION: FinishReason = "repetition"
KNOWN_FINISH_REASONS = (STOP, LENGTH, CANCELLED, ERROR)


class _Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


class ChatMessage(_Message, total=False):
    """One chat message as the chat template sees it.

    ``tokens`` optionally carries the token count of ``content`` tokenized as plain text, as the
    engine counted it before (stored with the message): counting a long stored conversation then
    costs only the template around the contents, not every content again.
    """

    tokens: int


@dataclass
class SamplingParams:
    """Per-request sampling. Ranges are validated at the API edge; the engine trusts them."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    max_tokens: int = 512
    seed: Optional[int] = None
    stop: list[str] = field(default_factory=list)
    #: Token id -> added logit (OpenAI ``logit_bias``); e.g. tests force end-of-generation with it.
    logit_bias: dict[int, float] = field(default_factory=dict)
    #: Never end at an end-of-generation token (llama-server's ``ignore_eos``): benchmarks use it so
    #: every server generates exactly ``max_tokens``.
    ignore_eos: bool = False
    #: End the reply when it becomes a runaway repetition (``engine/loops.py``); the result then
    #: says how much of the streamed text to keep.
    loop_guard: bool = False
    #: Regenerate once a reply that starts in the wrong language (``chat/language_check.py``, which
    #: acts on it above the engine; engines ignore it).
    language_check: bool = False


@dataclass
class GenerationRequest:
    """What to generate: chat messages (rendered with the model's chat template) or a raw prompt."""

    messages: list[ChatMessage] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    #: A raw prompt, already rendered, used instead of ``messages`` when set.
    prompt: Optional[str] = None
    #: Lower runs later when slots are contended (e.g. background title/summary jobs use -1).
    priority: int = 0
    #: The last message is an assistant message to continue: the template leaves it open (no
    #: end-of-turn token, no new assistant cue) and generation carries on from its last character.
    continue_last: bool = False
    #: What should land on the same generation server as earlier requests (the conversation id),
    #: so its KV prefix is reused there; None: engines that care derive one from the messages.
    affinity_key: Optional[str] = None


@dataclass
class Usage:
    """Token accounting, OpenAI style. ``cached_tokens`` came from a reused KV cache."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass
class Timings:
    """Where the time went, in milliseconds (``ttft_ms`` counts from submit, queue wait included)."""

    queue_ms: float = 0.0
    ttft_ms: float = 0.0
    prompt_ms: float = 0.0
    decode_ms: float = 0.0
    prompt_tokens_evaluated: int = 0

    def tokens_per_second(self, completion_tokens: int) -> float:
        # The first token comes out of prefill, so decode time covers the tokens after it.
        n = max(0, completion_tokens - 1)
        return round(n / (self.decode_ms / 1000.0), 2) if self.decode_ms > 0 and n else 0.0

    def to_dict(self, completion_tokens: int) -> dict[str, Any]:
        return {
            "queue_ms": round(self.queue_ms, 1),
            "ttft_ms": round(self.ttft_ms, 1),
            "prompt_ms": round(self.prompt_ms, 1),
            "decode_ms": round(self.decode_ms, 1),
            "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
            "tokens_per_second": self.tokens_per_second(completion_tokens),
        }


@dataclass
class GenerationResult:
    """How a generation ended."""

    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    error: Optional[str] = None
    #: With ``repetition``: the reply is the first ``text_length`` characters of the streamed text
    #: (the rest repeated them, and was already sent before the repetition was certain).
    text_length: Optional[int] = None
    #: The reply started in the wrong language and was generated again (``chat/language_check.py``);
    #: the text is the retry's only.
    language_retry: bool = False


_ids = itertools.count(1)
_END = object()


class Generation:
    """An async stream of text pieces for one request, fed by a worker thread or task.

    Iterating yields ``str`` pieces (never half a UTF-8 character, never a special token). When the
    iteration ends, :attr:`result` says why. Leaving the loop early does not stop the worker: call
    :meth:`cancel` (the API does so in a ``finally`` when the client goes away).
    """

    def __init__(self, loop: Optional[asyncio.AbstractEventLoop] = None, prompt_tokens: int = 0):
        self.id = next(_ids)
        self.loop = loop or asyncio.get_running_loop()
        self.prompt_tokens = prompt_tokens
        self.created = time.perf_counter()
        self.result: Optional[GenerationResult] = None
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._done = threading.Event()
        self._on_cancel: list[Callable[[], None]] = []

    # ---- consumer side ----------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[str]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            assert isinstance(item, str)
            yield item

    async def text(self) -> str:
        """Consume the whole stream and return its text."""
        return "".join([piece async for piece in self])

    def cancel(self) -> None:
        """Ask the worker to stop; it notices before its next decode step or prefill chunk, or
        during one when the worker asked to hear of it (:meth:`on_cancel`)."""
        self._cancelled.set()
        for hook in list(self._on_cancel):
            hook()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` (on the cancelling thread) when :meth:`cancel` is called: the llama.cpp
        scheduler aborts a prefill step that is running for this request alone."""
        self._on_cancel.append(hook)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait_done(self, timeout: Optional[float] = None) -> bool:
        """Block (in a thread) until the worker has finished with this generation."""
        return self._done.wait(timeout)

    # ---- producer side (any thread) ---------------------------------------------------------
    def emit(self, piece: str) -> None:
        if piece:
            self._put(piece)

    def finish(self, result: GenerationResult) -> None:
        if self._done.is_set():
            return
        self.result = result
        self._done.set()
        self._put(_END)

    def _put(self, item: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # loop closed: nobody is listening any more
            pass


@runtime_checkable
class Engine(Protocol):
    """What the API and chat layers need from an engine (local llama.cpp, the fake, or later a
    remote OpenAI-compatible upstream).

    Everything that may take long is a coroutine, so no caller blocks the event loop: tokenizing a
    300,000-character prompt, or counting a long conversation, would otherwise freeze every other
    stream. The synchronous counters exist for code already off the loop (a worker thread running
    the budget planner, the terminal chat); they are thread-safe.
    """

    #: Name reported by /v1/models and /api/config.
    model_name: str
    #: Tokens one conversation may use (prompt + reply).
    n_ctx: int

    @property
    def ready(self) -> bool:
        """True once the model is loaded and requests are accepted."""
        ...

    @property
    def tokenizer_id(self) -> str:
        """Names the tokenizer: stored token counts are reused only under the same id."""
        ...

    @property
    def failure(self) -> Optional[str]:
        """Why the engine stopped serving after it started (its worker died), else None. Once set
        it stays set: every request fails and the process should be restarted."""
        ...

    async def start(self) -> None:
        """Load the model (off the event loop) and start the worker."""
        ...

    async def wait_failure(self) -> str:
        """Return when the engine has failed for good (:attr:`failure`), for the server to exit."""
        ...

    async def close(self) -> None:
        """Cancel everything running and release the model."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Tokens of plain text (no special-token parsing). Blocking: not on the event loop."""
        ...

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens of these messages rendered with the chat template plus the generation prompt.
        A message's ``tokens`` (when given) stands for its content. Blocking: not on the event loop."""
        ...

    async def acount_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        """:meth:`count_prompt_tokens` off the event loop."""
        ...

    async def submit(self, request: GenerationRequest) -> Generation:
        """Admit a request and return its stream (the prompt is tokenized off the event loop).

        Raises :class:`~xiaoq.errors.Busy` when the queue is full,
        :class:`~xiaoq.errors.ContextLengthExceeded` when prompt + max_tokens exceed ``n_ctx``,
        :class:`~xiaoq.errors.ModelLoading` before :meth:`start` has finished and
        :class:`~xiaoq.errors.EngineError` once the engine has failed.
        """
        ...

    def stats(self) -> dict[str, Any]:
        """Counters and gauges for /metrics (queue depth, active slots, cache hits, ...)."""
        ...
