"""What both chat surfaces do with a running :class:`Generation`: measure it at the HTTP edge,
record it in the metrics once, and cancel it whenever the consumer stops early.
"""

from __future__ import annotations

import time
from typing import AsyncIterator, Optional

import anyio
from fastapi import Request

from xiaoq.api.metrics import Metrics
from xiaoq.engine.types import Engine, Generation, GenerationRequest, GenerationResult, Timings, Usage


class TrackedGeneration:
    """A submitted generation plus its HTTP-level timing."""

    def __init__(self, generation: Generation, metrics: Metrics, route: str, started: float):
        self.generation = generation
        self.metrics = metrics
        self.route = route
        self.started = started
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.pieces_seen = 0
        self._recorded = False

    @classmethod
    def submit(cls, engine: Engine, request: GenerationRequest, metrics: Metrics, route: str) -> "TrackedGeneration":
        """Submit now (so Busy / ContextLengthExceeded become JSON errors before any streaming)."""
        started = time.perf_counter()
        return cls(engine.submit(request), metrics, route, started)

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

    async def pieces(self) -> AsyncIterator[str]:
        """The text pieces; leaving early (disconnect, error) cancels the generation."""
        try:
            async for piece in self.generation:
                now = time.perf_counter()
                if self.first is None:
                    self.first = now
                self.last = now
                self.pieces_seen += 1
                yield piece
        finally:
            self.cancel()

    def _record(self) -> None:
        if self._recorded:
            return
        self._recorded = True
        ttft = (self.first - self.started) if self.first is not None else None
        tps = None
        if self.first is not None and self.last is not None and self.pieces_seen > 1 and self.last > self.first:
            tps = (self.pieces_seen - 1) / (self.last - self.first)
        self.metrics.observe_generation(self.route, self.result.finish_reason, ttft, tps)

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
        return "".join(parts)
