"""The ``xiaoq`` command: ``serve``, ``chat``, ``pull``, ``kb``, ``user``, ``backup``, ``restore`` and ``--version``.

A thin client of the same pieces the server uses (DESIGN.md): settings come from the one Settings
model (:mod:`xiaoq.cli.options`), model files from :mod:`xiaoq.engine.models`, the engine and the app
from their factories. Heavy imports (llama.cpp, FastAPI) happen inside the commands so ``--help``
stays instant.

Every error a user can cause is printed as ONE line on stderr with a non-zero exit status and no
traceback: usage and settings errors exit 2, model/engine/network errors exit 1, Ctrl-C exits 130.
``XIAOQ_DEBUG=1`` shows the traceback of unexpected errors.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Optional, Sequence

import click

from xiaoq import __version__
from xiaoq.errors import XiaoQError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


#: Each command and the module defining it (as an attribute of the same name).
COMMANDS = {
    "serve": "xiaoq.cli.serve", "chat": "xiaoq.cli.chat", "listen": "xiaoq.cli.listen", "pull": "xiaoq.cli.pull",
    "kb": "xiaoq.cli.kb", "user": "xiaoq.cli.users", "backup": "xiaoq.cli.backup", "restore": "xiaoq.cli.backup",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or the help lists them all):
    ``xiaoq serve`` does not pay for the chat terminal's or the microphone's imports before its
    model starts loading."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        module = COMMANDS.get(cmd_name)
        return getattr(importlib.import_module(module), cmd_name) if module else None


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="xiaoq", message="%(prog)s %(version)s")
def cli() -> None:
    """XiaoQ (小Q): a fast, private chatbot on a plain CPU (Qwen2.5 GGUF via llama.cpp)."""


def fail(message: str, status: int = 1) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
    """Print one ``error:`` line on stderr and exit."""
    message = " ".join(str(message).split())  # one line, whatever the exception text held
    try:
        click.echo(f"error: {message}", err=True)
    finally:
        sys.exit(status)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point (``xiaoq = "xiaoq.cli:main"``)."""
    debug = os.environ.get("XIAOQ_DEBUG", "").lower() in ("1", "true", "yes")
    from xiaoq.engine import early_load

    early_load.start(list(argv) if argv is not None else sys.argv[1:])  # `serve --model F`: F loads from now on
    try:
        status = cli.main(args=list(argv) if argv is not None else None, prog_name="xiaoq", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:  # `xiaoq` alone: show the help, as usual
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        status = 0
    except click.UsageError as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        fail(e.format_message() + hint, e.exit_code)
    except click.Abort:  # click turns KeyboardInterrupt / EOF outside our own handlers into Abort
        fail("interrupted", 130)
    except click.ClickException as e:
        fail(e.format_message(), e.exit_code)
    except XiaoQError as e:
        fail(e.message, 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:  # `xiaoq serve --help | head`
        sys.stderr.close()
        sys.exit(1)
    except Exception as e:
        if debug:
            raise
        fail(f"unexpected {type(e).__name__}: {e} (set XIAOQ_DEBUG=1 to see the traceback)", 1)
    sys.exit(status if isinstance(status, int) else 0)
