"""Service routes: ``GET /health`` (load balancers, the web UI's "model loading" notice),
``GET /metrics`` (Prometheus) and ``GET /api/config`` (what the web UI needs to know at start)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from xiaoq import __version__
from xiaoq.api.deps import EngineDep, MetricsDep, SettingsDep
from xiaoq.chat import policy
from xiaoq.engine.types import Engine

router = APIRouter(tags=["health"])

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 ``{"status": "ok"}`` when ready, 503 ``{"status": "loading"}`` before, 500
    ``{"status": "error"}`` when loading failed or the engine stopped later (until the server exits,
    or for good when it is embedded without an ``on_fatal`` handler). Public (probes send no key),
    so it says nothing else: the model name and the error (which holds file paths) are behind the
    key, in ``/api/config`` and in the error of every generating route, and in the server log."""
    engine: Engine = request.app.state.engine  # not EngineDep: that refuses after a failed load
    if request.app.state.load_error is not None or engine.failure is not None:
        return JSONResponse({"status": "error"}, status_code=500)
    if engine.ready:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "2"})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, registry: MetricsDep) -> PlainTextResponse:
    """Prometheus text format: the engine's stats plus HTTP-level latency histograms."""
    engine: Engine = request.app.state.engine  # also after a failed load (xiaoq_ready 0)
    stats = {**engine.stats(), **request.app.state.voice.stats()}
    return PlainTextResponse(registry.render(stats), media_type=PROMETHEUS_CONTENT_TYPE)


@router.get("/api/config")
async def config(request: Request, engine: EngineDep, settings: SettingsDep) -> dict:
    """Needs the key when one is set: the UI takes a 401 here as "ask the user for the key"."""
    return {
        "model": engine.model_name,
        "version": __version__,
        "auth_required": settings.auth_mode() != "none",
        "auth": settings.auth_mode(),
        "n_ctx": engine.n_ctx,
        "default_max_tokens": policy.default_max_tokens(settings),
        "max_tokens": settings.max_tokens,
        "temperature": settings.temperature,  # the defaults a conversation's settings fall back to
        "top_p": settings.top_p,
        "voice": await asyncio.to_thread(request.app.state.voice.info),
    }
