"""``xiaoq serve``: the HTTP server. Every option is generated from the Settings model."""

from __future__ import annotations

from typing import Any

import click

from xiaoq.cli.options import build_settings, settings_options
from xiaoq.cli.runtime import check_bind, model_path, pin_cpus, url_host


@click.command()
@settings_options()
def serve(**given: Any) -> None:
    """Serve the chat API (/chat SSE, OpenAI-compatible /v1) and the web UI.

    Settings come from these flags, else XIAOQ_* environment variables, else the defaults shown.
    """
    settings = build_settings(given)
    check_bind(settings)
    pin_cpus(settings)
    path = model_path(settings)

    import uvicorn

    from xiaoq.api.app import create_app
    from xiaoq.engine.llama_engine import LlamaEngine

    engine = LlamaEngine(path, settings)
    app = create_app(settings, engine)
    click.echo(f"XiaoQ: serving {path.name} at http://{url_host(settings.host)}:{settings.port} (Ctrl-C stops)", err=True)
    try:
        # uvicorn handles SIGINT/SIGTERM itself: it stops accepting, lets the app's lifespan close the
        # engine, then re-raises the signal, which lands here for Ctrl-C.
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False, timeout_graceful_shutdown=5)
    except KeyboardInterrupt:
        pass
    click.echo("XiaoQ: stopped", err=True)
