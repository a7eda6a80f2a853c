"""Log lines that user text cannot forge.

Titles, prompts, URL paths and the messages of exceptions they cause can hold CR, LF and other
control characters; written raw, ``"hi\\nINFO: model reloaded"`` becomes a second, fake log line.
Every record XiaoQ's server writes goes through :class:`EscapeControls`, so one record stays one
line. Prompts themselves are logged only when the operator asks (``--log-prompts``).
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """``a\\r\\nb`` -> ``a\\\\r\\\\nb``: control characters as visible escapes, the rest unchanged."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), text)


class EscapeControls(logging.Filter):
    """Formats the record's message once and escapes it; a traceback, when kept, stays as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = escape_controls(record.getMessage()), ()
        return True


PROMPT_LOG = logging.getLogger("xiaoq.prompts")


def log_prompt(enabled: bool, route: str, text: str) -> None:
    """One INFO line with the prompt, when the operator turned ``--log-prompts`` on; else nothing."""
    if enabled:
        PROMPT_LOG.info("prompt on %s (%d chars): %s", route, len(text), escape_controls(text))
