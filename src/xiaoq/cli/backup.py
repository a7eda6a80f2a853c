"""``xiaoq backup PATH`` and ``xiaoq restore PATH``: the conversations database, safe while serving.

The database comes from the same ``--db`` setting (flag or ``XIAOQ_DB``) as ``xiaoq serve``, so an
operator names it once. PostgreSQL has its own tools; these commands say so instead of guessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from xiaoq.cli.options import build_settings, settings_options
from xiaoq.config import Settings, is_postgres_url

PG_HINT = (
    "the database is PostgreSQL: back it up with its own tools, e.g. "
    "pg_dump -Fc -f xiaoq.dump '<url>' (restore: pg_restore --clean -d '<url>' xiaoq.dump)"
)


def _sqlite_path(settings: Settings) -> Path:
    if is_postgres_url(settings.db):
        raise click.ClickException(PG_HINT)
    return settings.db_path()


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@click.command()
@settings_options(["db"])
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def backup(path: Path, **given: Any) -> None:
    """Copy the conversations database to PATH (a new file), safely while the server runs."""
    from xiaoq.store.backup import backup as run_backup

    info = run_backup(_sqlite_path(build_settings(given)), path)
    click.echo(f"backup: {info.path} ({_size(info.bytes)}, {info.conversations} conversations, {info.messages} messages, integrity ok)")


@click.command()
@settings_options(["db"])
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def restore(path: Path, **given: Any) -> None:
    """Replace the conversations database by the backup PATH (stop the server first).

    The current database is kept beside it as <name>.before-restore-<time>.
    """
    from xiaoq.store.backup import restore as run_restore

    info, saved = run_restore(path, _sqlite_path(build_settings(given)))
    if saved is not None:
        click.echo(f"previous database kept as {saved}", err=True)
    click.echo(f"restored: {info.path} ({info.conversations} conversations, {info.messages} messages)")
