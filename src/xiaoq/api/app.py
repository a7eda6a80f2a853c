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

import anyio
from fastapi import FastAPI, Request
from starlette.responses import Response

from xiaoq import __version__
from xiaoq.api import routes_chat, routes_health, routes_openai, routes_tokenize, routes_voice
from xiaoq.api.access_log import AccessLogMiddleware
from xiaoq.api.errors import COMMON_ERRORS, install_error_handlers
from xiaoq.api.metrics import Metrics
from xiaoq.api.body_limits import RequestBodyMiddleware
from xiaoq.api.browser_guard import BrowserGuardMiddleware, ListedOriginsCORS
from xiaoq.api.middleware import ApiKeyMiddleware
from xiaoq.api.streaming import Draining
from xiaoq.api.routes_sandbox import PYODIDE_DIR, Pyodide, RunnerPage, is_sandbox_path
from xiaoq.api.web import WEB_DIR, SecurityHeadersMiddleware, WebUI, is_web_path
from xiaoq.config import Settings, is_postgres_url
from xiaoq.engine.cores import core_lender
from xiaoq.engine.types import Engine
from xiaoq.errors import NotFound, XiaoQError
from xiaoq.origins import normalize_host_pattern
from xiaoq.voice.service import VoiceService

log = logging.getLogger("xiaoq.api")

#: Routes that never need the API key (the web UI's static files are added when it is served).
PUBLIC_PATHS = frozenset({"/health"})


def public_path_checker(web: Optional[WebUI]) -> Callable[[str], bool]:
    """``/health`` is public; with the web UI served, so are its static files (the page itself asks
    the user for the key and sends it on API calls)."""

    def is_public(path: str) -> bool:
        return path in PUBLIC_PATHS or (web is not None and (is_web_path(path, web) or is_sandbox_path(path)))

    return is_public


async def _load_engine(app: FastAPI, engine: Engine) -> None:
    """Start the engine, then watch it: a load failure or a worker that dies later is reported on
    ``/health`` and handed to ``on_fatal`` (``xiaoq serve`` exits non-zero for its supervisor)."""
    try:
        await engine.start()
        log.info("model %s ready", engine.model_name)
    except asyncio.CancelledError:
        raise
    except XiaoQError as exc:
        app.state.load_error = exc.message
        log.error("model failed to load: %s", exc.message)
        _fatal(app, exc.message)
        return
    except Exception as exc:  # anything else from llama.cpp: still report it on /health
        app.state.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("model failed to load")
        _fatal(app, app.state.load_error)
        return
    _fatal(app, f"the engine stopped: {await engine.wait_failure()}")


def _fatal(app: FastAPI, message: str) -> None:
    on_fatal = app.state.on_fatal
    if on_fatal is not None:
        on_fatal(message)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine: Engine = app.state.engine
    task = asyncio.create_task(_load_engine(app, engine), name="xiaoq-engine-start")
    app.state.engine_start_task = task
    # anyio runs every streamed reply (sse.py, streaming.py) and imports its asyncio backend on
    # first use: ~9 ms that the first user's first token would wait for. Here the model is
    # still loading beside it (issue 12: process start to first token).
    await anyio.sleep(0)
    try:
        yield
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        service = getattr(app.state, "conversations", None)
        if service is not None:  # running replies are stored `incomplete` before the engine goes
            await service.close()
        jobs = getattr(app.state, "kb_jobs", None)
        if jobs is not None:
            await asyncio.to_thread(jobs.close)
        await engine.close()
        await asyncio.to_thread(app.state.voice.close)


def _include_conversations(app: FastAPI, store: object) -> None:
    """The conversations API: ``xiaoq.api.routes_conversations.router`` reaches the store through
    the :class:`ConversationService` wired here (``deps.ConversationsDep``), as does ``/chat`` with
    a ``conversation_id``."""
    from xiaoq.api import routes_conversations, routes_presets
    from xiaoq.chat.conversation import ConversationService

    app.state.conversations = ConversationService(store, app.state.engine, app.state.settings, kbs=app.state.kb)  # type: ignore[arg-type]
    app.include_router(routes_conversations.router)
    app.include_router(routes_presets.router)


def _include_accounts(app: FastAPI, settings: Settings, store: Optional[object]) -> None:
    """Users, sessions and keys live in the conversations' database. The store is switched to
    per-user views only (``tenanted``); conversations kept before accounts go to the first admin."""
    from xiaoq.api import routes_auth
    from xiaoq.auth.accounts import Accounts
    from xiaoq.auth.limits import UserLimits
    from xiaoq.store.users import UserStore

    if store is None:
        raise XiaoQError(f"--auth {settings.auth_mode()} needs the conversations database (its users live there).")
    users = UserStore(store.db)  # type: ignore[attr-defined]
    admin = users.first_admin()
    if admin is not None:
        users.claim_unowned(admin.id)
    store.tenanted = True  # type: ignore[attr-defined]
    app.state.accounts = Accounts(users, session_hours=settings.session_hours)
    app.state.user_limits = UserLimits(settings.user_streams, settings.user_rpm)
    app.include_router(routes_auth.router)


def _include_knowledge_bases(app: FastAPI, store: object) -> None:
    """Knowledge bases live in the conversations' database; ingest jobs yield to decoding slots."""
    from xiaoq.api import routes_embeddings, routes_kb
    from xiaoq.kb.jobs import JobRunner, engine_pause
    from xiaoq.kb.service import KnowledgeBases
    from xiaoq.store.kb import knowledge_store

    engine: Engine = app.state.engine
    run = getattr(engine, "call_on_scheduler", None)  # a GGUF embedder shares the decoding thread
    db = getattr(store, "db", None)  # the schema-only apps of the fuzz tests pass a bare object
    app.state.kb = KnowledgeBases(knowledge_store(db), app.state.settings, pause=engine_pause(engine.stats), run=run)  # type: ignore[arg-type]
    app.state.kb_jobs = JobRunner()
    app.include_router(routes_kb.router)
    app.include_router(routes_kb.files_router)
    app.include_router(routes_embeddings.router)


def _include_runner(app: FastAPI, pyodide_dir: Path) -> None:
    """The code runner's sandbox page and Pyodide's files, served with the UI that uses them."""
    from xiaoq.api import routes_sandbox

    app.state.runner_page = RunnerPage.build()
    app.state.pyodide = Pyodide(pyodide_dir)
    app.include_router(routes_sandbox.router)


def _mount_web_ui(app: FastAPI, web: WebUI) -> None:
    """Hook for the web UI (issue 4, ``api/web.py``): a catch-all GET route registered after every
    API route, so API paths win; anything that is not a file of the build is a JSON 404."""

    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def web_file(path: str, request: Request) -> Response:
        found = web.lookup("/" + path)
        if found is None:
            raise NotFound(f"Not found: {request.url.path}")
        return web.response(request, found)


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    store: Optional[object] = None,
    web_dir: Optional[Path] = WEB_DIR,
    voice: Optional[VoiceService] = None,
    pyodide_dir: Path = PYODIDE_DIR,
    on_fatal: Optional[Callable[[str], None]] = None,
) -> FastAPI:
    """Build the app. ``engine.start()`` runs in the background from the lifespan (``/health`` says
    "loading" until it is done); ``engine.close()`` runs at shutdown. ``store`` enables the
    conversations API; the web UI is served from ``web_dir`` when it holds a build (None: never).
    ``voice`` defaults to the engines the settings name, built on first use. ``pyodide_dir``: where
    the code runner finds Pyodide's files (served with the UI; absent, Python blocks cannot run).
    ``on_fatal(message)`` is called (on the event loop) when the engine fails to load or dies: the
    server cannot answer any more and should exit."""
    app = FastAPI(title="XiaoQ", version=__version__, lifespan=_lifespan, responses=COMMON_ERRORS)
    app.state.settings = settings
    app.state.engine = engine
    app.state.on_fatal = on_fatal
    app.state.store = store
    app.state.metrics = Metrics()
    app.state.draining = Draining()  # started by api/shutdown.py's server on SIGTERM
    app.state.load_error = None
    app.state.conversations = None
    app.state.voice = voice if voice is not None else VoiceService(settings, lend_core=core_lender(engine))
    app.state.kb = None
    app.state.kb_jobs = None
    app.state.accounts = None

    install_error_handlers(app)
    app.include_router(routes_health.router)
    app.include_router(routes_chat.router)
    app.include_router(routes_openai.router)
    app.include_router(routes_voice.router)
    app.include_router(routes_tokenize.router)
    if settings.multi_user():
        _include_accounts(app, settings, store)
    if store is not None:
        _include_knowledge_bases(app, store)
        _include_conversations(app, store)

    if settings.multi_user() and app.state.kb is not None:
        app.state.kb.store.tenanted = True  # only a user's view may look (deps.viewer_kbs)
    web = WebUI(web_dir, exclude=_data_folders(settings)) if web_dir is not None else None
    if web is not None and not web.available:
        web = None
    if web is not None:
        _include_runner(app, pyodide_dir)
        _mount_web_ui(app, web)
    _add_guards(app, settings, web)
    # Outermost: every response, refusals included, carries its request id and gets its log line.
    app.add_middleware(AccessLogMiddleware, enabled=settings.access_log, log_query=settings.log_prompts)
    return app


def _add_guards(app: FastAPI, settings: Settings, web: Optional[WebUI]) -> None:
    """The middleware, outermost first: security headers on every response (400/401/403/413 too);
    Host and Origin before anything else runs; CORS only for the origins the operator listed
    (never ``*``); the key before any body is read; then the body's type and size for its route."""
    app.add_middleware(
        RequestBodyMiddleware,
        routes=lambda: app.routes,
        max_json_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_mb * 1024 * 1024,
    )
    if settings.multi_user():
        from xiaoq.api.auth import AccountsMiddleware

        app.add_middleware(
            AccountsMiddleware,
            accounts=app.state.accounts,
            limits=app.state.user_limits,
            is_public=public_path_checker(web),
            user_header=settings.auth_header(),
            trusted_proxies=settings.trusted_proxies,
        )
    else:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.key(), is_public=public_path_checker(web))
    if settings.allowed_origins:
        app.add_middleware(ListedOriginsCORS, allowed_origins=settings.allowed_origins)
    app.add_middleware(BrowserGuardMiddleware, allowed_hosts=settings.allowed_hosts + _bind_name(settings), allowed_origins=settings.allowed_origins)
    app.add_middleware(SecurityHeadersMiddleware)


def _data_folders(settings: Settings) -> list[Path]:
    """Where XiaoQ writes: never served as part of the web UI, wherever the operator put it."""
    db_folder = [] if is_postgres_url(settings.db) else [settings.db_path().parent]
    return [settings.data_path(), *db_folder, settings.kv_disk_dir(), settings.uploads_dir()]


def _bind_name(settings: Settings) -> list[str]:
    """A server bound to a name (``--host xiaoq.lan``) answers that name without listing it again."""
    try:
        return [normalize_host_pattern(settings.host)] if settings.host.strip("[]") not in ("", "0.0.0.0", "::") else []
    except ValueError:
        return []
