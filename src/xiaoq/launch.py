"""The ``xiaoq`` console script's entry: start reading the model, then import the command line.

Why a module of its own: ``xiaoq.cli`` imports click and builds the command group as it is
imported, ~20–40 ms of interpreter time on these 2-core machines before its ``main`` could begin
the model's load. For ``xiaoq serve --model F`` that load (``engine/early_load.py``) is the longer
of start-up's two chains, so every millisecond it starts earlier is one off the time to the first
token (issue 12 counts process start to first token against llama-server). Importing this module
costs only ``xiaoq``'s and ``xiaoq.engine.early_load``'s own few imports.
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    """``xiaoq = "xiaoq.launch:main"``: the same command line as :func:`xiaoq.cli.main`."""
    if sys.argv[1:2] == ["serve"]:
        # The web stack's imports create ~10^5 long-lived objects; the collector would scan them
        # again and again while they are created (~35 ms of start-up here), and a full collection
        # soon after start (~40 ms) would land in the first requests. ``serve`` freezes what
        # start-up made and turns collection back on before it answers anything (serve.py).
        gc.disable()
    from xiaoq.engine import early_load

    early_load.start(sys.argv[1:])  # `serve --model F`: F loads from now on (cli.main's call then does nothing)
    from xiaoq.cli import main as cli_main

    cli_main()
