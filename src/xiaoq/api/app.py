"""The FastAPI application factory.

``create_app(settings, engine)`` wires one engine (real or fake) into the HTTP surfaces; the CLI
runs it with uvicorn. Model loading happens in the background after startup, so ``/health`` can
answer "loading" while a large model maps in, and report a load failure instead of dying silently.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Callable, Optional

from fastapi import FastAPI

from xiaoq import __version__
from xiaoq.api import routes_chat, routes_health, routes_openai
from xiaoq.api.errors import install_error_handlers
from xiaoq.api.metrics import Metrics
from xiaoq.api.middleware import ApiKeyMiddleware, BodyLimitMiddleware
from xiaoq.config import Settings
from xiaoq.engine.types import Engine
from xiaoq.errors import XiaoQError

log = logging.getLogger("xiaoq.api")

#: Routes that never need the API key.
PUBLIC_PATHS = frozenset({"/health"})
#: Path prefixes that belong to the API (everything else may be the web UI once it is mounted).
API_PREFIXES = ("/chat", "/v1/", "/api/", "/metrics", "/docs", "/redoc", "/openapi.json")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def web_ui_available(web_dir: Path = WEB_DIR) -> bool:
    return (web_dir / "index.html").is_file()


def public_path_checker(serve_ui: bool) -> Callable[[str], bool]:
    """``/health`` is public; with the web UI mounted, so are its static files (the UI itself
    asks the user for the key and sends it on API calls)."""

    def is_public(path: str) -> bool:
        if path in PUBLIC_PATHS:
            return True
        return serve_ui and not (path.startswith(API_PREFIXES))

    return is_public


async def _load_engine(app: FastAPI, engine: Engine) -> None:
    try:
        await engine.start()
        log.info("model %s ready", engine.model_name)
    except asyncio.CancelledError:
        raise
    except XiaoQError as exc:
        app.state.load_error = exc.message
        log.error("model failed to load: %s", exc.message)
    except Exception as exc:  # anything else from llama.cpp: still report it on /health
        app.state.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("model failed to load")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine: Engine = app.state.engine
    task = asyncio.create_task(_load_engine(app, engine), name="xiaoq-engine-start")
    app.state.engine_start_task = task
    try:
        yield
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await engine.close()


def _include_conversations(app: FastAPI, store: object) -> None:
    """Hook for the conversations API (issue 3): ``xiaoq.api.routes_conversations.router`` reads
    the store through ``deps.StoreDep``. Also where ``/chat``'s ``conversation_id`` gets its store."""
    from xiaoq.api import routes_conversations  # type: ignore[attr-defined]  # written with the store

    app.include_router(routes_conversations.router)


def _mount_web_ui(app: FastAPI, web_dir: Path) -> None:
    """Hook for the web UI (issue 4): serve the built Vue app from ``xiaoq/web/``. Mounted last so
    API routes win; the UI engineer refines caching, compression and security headers here."""
    from starlette.staticfiles import StaticFiles

    app.mount("/", StaticFiles(directory=web_dir, html=True), name="web")


def create_app(settings: Settings, engine: Engine, *, store: Optional[object] = None, serve_ui: Optional[bool] = None) -> FastAPI:
    """Build the app. ``engine.start()`` runs in the background from the lifespan (``/health`` says
    "loading" until it is done); ``engine.close()`` runs at shutdown. ``store`` enables the
    conversations API; ``serve_ui`` (default: when ``xiaoq/web/index.html`` exists) serves the UI."""
    app = FastAPI(title="XiaoQ", version=__version__, lifespan=_lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.store = store
    app.state.metrics = Metrics()
    app.state.load_error = None

    install_error_handlers(app)
    app.include_router(routes_health.router)
    app.include_router(routes_chat.router)
    app.include_router(routes_openai.router)
    if store is not None:
        _include_conversations(app, store)

    ui = web_ui_available() if serve_ui is None else serve_ui
    if ui:
        _mount_web_ui(app, WEB_DIR)

    # Added last = outermost: the key is checked before a body is read, then the size limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, is_public=public_path_checker(ui))
    return app
