"""The uvicorn server that tells running streams the server is stopping.

uvicorn turns SIGTERM / SIGINT into "stop accepting, wait up to the grace period for open responses,
then cut them". Nothing in ASGI tells the app that this has begun (the lifespan shutdown comes only
after the responses are gone), so the exit signal handler itself starts the drain: every running
generation stops and its stream ends with a ``server_shutting_down`` error event
(:class:`~xiaoq.api.streaming.Draining`), well within the grace period.
"""

from __future__ import annotations

import asyncio
from types import FrameType
from typing import Optional

import uvicorn

from xiaoq.api.streaming import Draining


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` whose exit signal also starts ``draining`` (on the event loop's thread)."""

    def __init__(self, config: uvicorn.Config, draining: Draining):
        super().__init__(config)
        self.draining = draining

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        try:
            # A signal handler runs between two bytecodes of the loop's thread: schedule the drain
            # instead of running it there (it takes locks the interrupted code may hold).
            asyncio.get_running_loop().call_soon_threadsafe(self.draining.begin)
        except RuntimeError:  # no loop running yet: nothing streams
            self.draining.active = True
        super().handle_exit(sig, frame)
