"""``GET /health`` (load balancers, the web UI's "model loading" notice) and ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from xiaoq.api.deps import EngineDep, MetricsDep

router = APIRouter(tags=["health"])

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/health")
async def health(request: Request, engine: EngineDep) -> JSONResponse:
    """200 ``{"status": "ok", "model"}`` when ready, 503 ``{"status": "loading"}`` before, and 500
    ``{"status": "error", "message"}`` when loading failed (the server keeps running so the cause
    is visible here and in the log)."""
    load_error = getattr(request.app.state, "load_error", None)
    if load_error is not None:
        return JSONResponse({"status": "error", "message": load_error}, status_code=500)
    if engine.ready:
        return JSONResponse({"status": "ok", "model": engine.model_name})
    return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "2"})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(engine: EngineDep, registry: MetricsDep) -> PlainTextResponse:
    """Prometheus text format: the engine's stats plus HTTP-level latency histograms."""
    return PlainTextResponse(registry.render(engine.stats()), media_type=PROMETHEUS_CONTENT_TYPE)
