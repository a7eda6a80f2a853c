"""Process-wide logging: one handler on stderr, text for people or JSON lines for log collectors.

Every line carries the request id of the HTTP request it belongs to (set by
:class:`xiaoq.api.access_log.AccessLogMiddleware` in a context variable, which asyncio tasks and
``asyncio.to_thread`` inherit), so an operator can grep one request's lines across XiaoQ's own
logger, uvicorn's and the access log. Both formats keep a record on ONE line: a CR or LF in a
message (a title, a path) is escaped (:func:`xiaoq.logsafe.escape_controls`), never a forged
second line; JSON escapes them by itself.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import time
from typing import Any, Literal, Optional

from xiaoq.logsafe import escape_controls

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

#: The id of the HTTP request being handled in this context ("-" outside any request).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("xiaoq_request_id", default="-")

#: Loggers configured here: XiaoQ's own and uvicorn's (its access log stays off: ours replaces it).
LOGGERS = ("xiaoq", "uvicorn", "uvicorn.error")

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and goes to JSON.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (``%(request_id)s``, the JSON ``request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class TextFormatter(logging.Formatter):
    """``2026-11-29T22:50:01.123Z INFO xiaoq.access [rid] message`` with the message on one line."""

    def __init__(self, debug: bool = False):
        super().__init__()
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        message = escape_controls(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message += f": {type(exc).__name__}: {escape_controls(str(exc))}"
            if self.debug:
                message += "\n" + self.formatException(record.exc_info)
        return f"{utc_iso(record.created)} {record.levelname:<7} {record.name} [{getattr(record, 'request_id', '-')}] {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, request_id, message, plus the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": utc_iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info and record.exc_info[1] is not None:
            out["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(out, ensure_ascii=False, default=str)


def utc_iso(created: float) -> str:
    """A record's time as ISO-8601 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def setup_logging(level: str = "info", fmt: str = "text", *, stream: Optional[Any] = None) -> logging.Handler:
    """Send XiaoQ's and uvicorn's records, at ``level`` and above, to one stderr handler.

    Idempotent: a second call replaces the handler (tests call it with other settings).
    ``XIAOQ_DEBUG=1`` adds tracebacks to text lines.
    """
    handler = logging.StreamHandler(stream)
    debug = os.environ.get("XIAOQ_DEBUG", "").lower() in ("1", "true", "yes")
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(debug=debug))
    handler.addFilter(RequestIdFilter())
    handler.set_name("xiaoq")
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "xiaoq"]:
            logger.removeHandler(old)
        logger.setLevel(level.upper())
        logger.propagate = False
        if name != "uvicorn.error":  # it propagates to "uvicorn"
            logger.addHandler(handler)
    logging.getLogger("uvicorn.error").propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    return handler
