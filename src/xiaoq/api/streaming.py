"""What both chat surfaces do with a running :class:`Generation`: measure it at the HTTP edge,
record it in the metrics once, cancel it whenever the consumer stops early, and end it with a
``server_shutting_down`` error event when the server is told to stop (:class:`Draining`).

Why the server says so instead of just closing: on SIGTERM uvicorn waits for open responses up to
its grace period and then cuts them, so a client would see a truncated stream it cannot tell from a
network fault. Ending every stream at once with an error event tells it why (and the conversation
service still stores the partial reply), and the process exits well within the grace period.
"""

from __future__ import annotations

import logging
import time
from typing import AsyncIterator, Callable, Optional

import anyio
from fastapi import Request

from xiaoq.api.metrics import Metrics
from xiaoq.api.sse import sse_data
from xiaoq.chat.grounding import submit_answer
from xiaoq.engine.types import Engine, Generation, GenerationRequest, GenerationResult, Timings, Usage
from xiaoq.errors import EngineError, ShuttingDown
from xiaoq.kb.answer import Grounding

log = logging.getLogger("xiaoq.api")


class Draining:
    """The streams in flight, and whether the server is stopping. One per app
    (``app.state.draining``); :meth:`begin` is called from the server's exit signal handler."""

    def __init__(self) -> None:
        self.active = False
        self.live: set["TrackedGeneration"] = set()

    def begin(self) -> None:
        """Stop every running generation; each stream then ends with ``server_shutting_down``."""
        self.active = True
        for tracked in list(self.live):
            tracked.interrupt()

    def add(self, tracked: "TrackedGeneration") -> None:
        self.live.add(tracked)
        if self.active:  # started while the server is already stopping
            tracked.interrupt()


class TrackedGeneration:
    """A submitted generation plus its HTTP-level timing."""

    def __init__(self, generation: Generation, metrics: Metrics, route: str, started: float, draining: Optional[Draining] = None):
        self.generation = generation
        self.draining = draining
        #: Set when the server's shutdown stopped this generation.
        self.shutting_down = False
        self.metrics = metrics
        self.route = route
        self.started = started
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.pieces_seen = 0
        #: Set by :meth:`framed` when the stream ended with an error event.
        self.failed = False
        self._recorded = False

    @classmethod
    async def submit(
        cls, engine: Engine, request: GenerationRequest, metrics: Metrics, route: str, draining: Optional[Draining] = None, grounding: Optional[Grounding] = None
    ) -> "TrackedGeneration":
        """Submit now (so Busy / ContextLengthExceeded become JSON errors before any streaming);
        a ``grounding`` the retrieval gate refused streams its refusal instead."""
        started = time.perf_counter()
        return cls(await submit_answer(engine, request, grounding), metrics, route, started, draining)

    @property
    def result(self) -> GenerationResult:
        """How it ended; ``cancelled`` when the stream was left before the engine finished."""
        if self.generation.result is not None:
            return self.generation.result
        return GenerationResult("cancelled", Usage(prompt_tokens=self.generation.prompt_tokens, completion_tokens=self.pieces_seen), Timings())

    def cancel(self) -> None:
        """Stop the engine's work (idempotent; harmless after the end) and record the outcome."""
        self.generation.cancel()
        self._record()

    def interrupt(self) -> None:
        """The server is stopping: end the generation; :meth:`framed` reports why."""
        self.shutting_down = True
        self.generation.cancel()

    async def pieces(self) -> AsyncIterator[str]:
        """The text pieces; leaving early (disconnect, error) cancels the generation."""
        if self.draining is not None:
            self.draining.add(self)
        try:
            async for piece in self.generation:
                now = time.perf_counter()
                if self.first is None:
                    self.first = now
                self.last = now
                self.pieces_seen += 1
                yield piece
        finally:
            if self.draining is not None:
                self.draining.live.discard(self)
            self.cancel()

    async def framed(self, frame: Callable[[str], bytes]) -> AsyncIterator[bytes]:
        """Each piece as an SSE event made by ``frame``. A failure (the engine's, or a bug) ends the
        stream with one ``data: {"error": ...}`` event and sets :attr:`failed`, so the caller sends
        no closing event after it."""
        try:
            async for piece in self.pieces():
                yield frame(piece)
        except Exception:
            log.exception("%s stream failed", self.route)
            self.failed = True
            yield sse_data(EngineError("Generation failed unexpectedly.").to_dict())
            return
        if self.shutting_down:
            self.failed = True
            yield sse_data(ShuttingDown().to_dict())
        elif self.result.finish_reason == "error":
            self.failed = True
            yield sse_data(EngineError(self.result.error or "Generation failed.").to_dict())

    def _record(self) -> None:
        if self._recorded:
            return
        self._recorded = True
        ttft = (self.first - self.started) if self.first is not None else None
        tps = None
        # Tokens, not pieces (a piece may hold several byte tokens of one character) when known.
        tokens = self.result.usage.completion_tokens or self.pieces_seen
        if self.first is not None and self.last is not None and tokens > 1 and self.last > self.first:
            tps = (tokens - 1) / (self.last - self.first)
        self.metrics.observe_generation(self.route, self.result.finish_reason, ttft, tps, self.result.language_retry)

    async def collect(self, request: Request) -> str:
        """The whole text, for non-streaming responses; a client that hangs up cancels the work."""
        parts: list[str] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while True:
                    message = await request.receive()
                    if message["type"] == "http.disconnect":
                        self.cancel()
                        return

            tg.start_soon(watch)
            try:
                async for piece in self.pieces():
                    parts.append(piece)
            finally:
                tg.cancel_scope.cancel()
        if self.shutting_down:
            raise ShuttingDown()
        return "".join(parts)
