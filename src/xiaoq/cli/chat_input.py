"""Reading one message at the terminal chat's prompt: a line, a pasted block, or a typed block.

- Pasted text arrives faster than anyone types: after a line, the lines already waiting on the
  terminal are read too, so a pasted paragraph is ONE message. Only on a terminal (a select on
  stdin); readline reads a byte at a time, so what it has not read is still waiting there.
- To type several lines: ``\"\"\"`` alone on a line opens a block that the next ``\"\"\"`` line
  closes, or end a line with ``\\`` to go on with the next.
"""

from __future__ import annotations

import select
import sys
from typing import Callable

BLOCK = '"""'
MORE_PROMPT = "… "
#: How long a line may trail the previous one and still belong to the same paste (seconds).
PASTE_GAP = 0.03


def waiting_input() -> bool:
    """True when more typed or pasted input is already waiting on the terminal."""
    if not sys.stdin.isatty():
        return False
    try:
        return bool(select.select([sys.stdin], [], [], PASTE_GAP)[0])
    except (OSError, ValueError):
        return False


def read_message(prompt: str, pending: Callable[[], bool] = waiting_input) -> str:
    """One message (several lines joined by ``\\n``); EOFError / KeyboardInterrupt pass through."""
    first = input(prompt)
    if first.strip() == BLOCK:
        return _block()
    lines = [first]
    while lines[-1].endswith("\\") or pending():
        if lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1]
        lines.append(input(MORE_PROMPT))
    return "\n".join(lines)


def _block() -> str:
    lines: list[str] = []
    while True:
        line = input(MORE_PROMPT)
        if line.strip() == BLOCK:
            return "\n".join(lines)
        lines.append(line)
