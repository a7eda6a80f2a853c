"""The server's log handler keeps one record on one line whatever user text it carries."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from xiaoq.logs import setup_logging


@pytest.fixture
def clean_logger() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("xiaoq", "uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    yield
    for lg, (handlers, level, propagate, disabled) in zip(loggers, saved):
        lg.handlers[:], lg.level, lg.propagate, lg.disabled = handlers, level, propagate, disabled


def test_control_characters_in_user_text_cannot_forge_log_lines(clean_logger: None, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()  # the server's handler, writing to the captured stderr
    title = "report\r\nINFO:     admin logged in\x1b[2J\u2028done"
    logging.getLogger("xiaoq.api").error("GET %s failed: %s", "/api/conversations/x\n", title)
    try:
        raise ValueError(f"bad title {title}")
    except ValueError:
        logging.getLogger("xiaoq.chat").exception("storing failed")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("report\\r\\nINFO:     admin logged in\\x1b[2J\\u2028done")
    assert "ValueError: bad title report\\r\\n" in lines[1]


def test_escape_keeps_ordinary_text() -> None:
    from xiaoq.logsafe import escape_controls

    assert escape_controls("你好, world! 🙂") == "你好, world! 🙂"
    assert escape_controls("a\tb\x00c\x7f") == "a\\tb\\x00c\\x7f"
