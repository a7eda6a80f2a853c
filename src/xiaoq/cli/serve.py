"""``xiaoq serve``: the HTTP server. Every option is generated from the Settings model."""

from __future__ import annotations

import gc
import signal
from pathlib import Path
from typing import Any, Optional

import click

from xiaoq.cli.options import build_settings, settings_options
from xiaoq.cli.runtime import check_bind, listen_socket, model_path, pin_cpus, tls_options, url_host
from xiaoq.config import Settings
from xiaoq.engine.types import Engine
from xiaoq.errors import EngineError
from xiaoq.logs import setup_logging


@click.command()
@settings_options()
def serve(**given: Any) -> None:
    """Serve the chat API (/chat SSE, OpenAI-compatible /v1) and the web UI.

    Settings come from these flags, else XIAOQ_* environment variables, else the defaults shown.
    """
    settings = build_settings(given)
    check_bind(settings)
    tls_options(settings)  # a missing or unreadable certificate is one line before anything loads
    pin_cpus(settings)
    # With upstreams the model file is optional: only its vocabulary is read, to count tokens.
    path = model_path(settings) if settings.model or not settings.upstream else None
    # Bind before loading anything: a busy port is one line now, not a log dump after the load.
    sock = listen_socket(settings.host, settings.port)
    port = sock.getsockname()[1]  # the real one when --port 0

    setup_logging(settings.log_level, settings.log_format)
    from xiaoq.store import open_store

    store = open_store(settings.database())  # created and migrated on first start; a bad --db fails here
    engine = make_engine(settings, path)

    import uvicorn

    from xiaoq.api.app import create_app
    from xiaoq.api.shutdown import DrainingServer
    from xiaoq.engine.cores import core_lender
    from xiaoq.voice.service import VoiceService

    voice = VoiceService(settings, lend_core=core_lender(engine))
    voice.warm_when_idle(lambda: engine_idle(engine))  # after the chat model and its first answers
    fatal = _FatalExit()
    app = create_app(settings, engine, store=store, voice=voice, on_fatal=fatal)
    scheme = "https" if settings.tls_cert else "http"
    what = f"{len(settings.upstream)} upstream(s)" if settings.upstream else path.name if path else "?"
    click.echo(f"XiaoQ: serving {what} at {scheme}://{url_host(settings.host)}:{port} (Ctrl-C stops)", err=True)
    click.echo(f"XiaoQ: conversations in {store.db.path}", err=True)
    click.echo(f"XiaoQ: voice: {voice.summary()}", err=True)
    # uvicorn handles SIGINT/SIGTERM itself: it stops accepting, DrainingServer ends every running
    # stream with a server_shutting_down event, the app's lifespan closes the engine, then uvicorn
    # re-raises the signal to the handler that was there before: ours turns SIGTERM (systemd,
    # docker stop, kill) into the same clean exit as Ctrl-C.
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        config = uvicorn.Config(
            app, host=settings.host, port=port, log_config=None, log_level=settings.log_level, access_log=False,
            timeout_graceful_shutdown=5, ws="none", **tls_options(settings),  # no WebSocket route: not its ~10 ms of imports
        )
        fatal.server = DrainingServer(config, app.state.draining)
        # Start-up's objects (modules, classes, the app) live as long as the process: out of the
        # collector's sight, so no full collection rescans them during a request; collection back
        # on for what requests create (launch.py turned it off for start-up).
        gc.freeze()
        gc.enable()
        fatal.server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        sock.close()
        store.close()
    if fatal.message is not None:  # exit non-zero: systemd / Docker restart policies act on it
        raise EngineError(fatal.message)
    click.echo("XiaoQ: stopped", err=True)


class _FatalExit:
    """``on_fatal`` for the app: remember why, and stop uvicorn (its graceful shutdown lets the
    failed streams end and the lifespan close the engine); ``serve`` then exits with status 1."""

    def __init__(self) -> None:
        self.server: Any = None
        self.message: Optional[str] = None

    def __call__(self, message: str) -> None:
        self.message = self.message or message
        if self.server is not None:
            self.server.should_exit = True


def make_engine(settings: Settings, path: Optional[Path]) -> Engine:
    """The local llama.cpp engine, or the upstream engine when ``--upstream`` names servers."""
    if settings.upstream:
        from xiaoq.engine.upstream import UpstreamEngine, check_upstreams

        check_upstreams(settings.upstream)
        return UpstreamEngine(settings, vocab_path=path)
    from xiaoq.engine.llama_engine import LlamaEngine

    assert path is not None
    engine = LlamaEngine(path, settings)
    engine.preload()  # the model loads on its own thread while the web stack is imported and built
    return engine


def engine_idle(engine: Engine) -> bool:
    """Loaded, and nothing generating or waiting."""
    stats = engine.stats()
    return bool(stats.get("ready")) and not stats.get("slots_active") and not stats.get("queue_depth")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
