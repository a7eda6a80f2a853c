"""Hypothesis on the pure text machinery every reply passes through: the SSE framing of the server
(``api/sse.py``) read back by the terminal client's parser (``cli/chat.py``), the incremental UTF-8
detokenizer with stop strings (``engine/utf8.py``) and the streaming fence repairer
(``chat/fences.py``). Each property holds for any text and any way of cutting it into pieces.
Bounded: a few hundred examples each, no example database."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xiaoq.api.sse import SSE_DONE, sse_data
from xiaoq.chat.fences import FenceRepairer
from xiaoq.cli.chat_remote import _sse_events
from xiaoq.engine.utf8 import TextStream

BOUNDED = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

#: Text that stresses framing and decoding: line breaks of every kind, NUL, surrogate-free astral
#: characters, Chinese, and JSON's own syntax.
TRICKY = st.lists(st.sampled_from(list("ab \n\r\t\x00\x85\u2028\u2029\"\\{}:,[]") + ["中", "文", "😀", "é", "data: ", "[DONE]"]), max_size=30).map("".join)
ANY_TEXT = st.one_of(TRICKY, st.text(max_size=60))
SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT
JSON_VALUE = SCALAR | st.lists(SCALAR, max_size=3) | st.dictionaries(TRICKY, SCALAR, max_size=3)
EVENT = st.dictionaries(TRICKY, JSON_VALUE, min_size=1, max_size=3)
SSE_BOUNDED = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def cut(data: Any, points: list[int]) -> list[Any]:
    """``data`` cut at the given positions (taken modulo its length, sorted, deduplicated)."""
    if not data:
        return [data]
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(marks, marks[1:])]


CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


# ---- SSE: the server's framing, the client's parser ---------------------------------------------
@SSE_BOUNDED
@given(events=st.lists(EVENT, max_size=4))
def test_sse_events_round_trip_through_the_cli_parser(events: list[dict[str, Any]]) -> None:
    stream = b"".join(sse_data(e) for e in events) + SSE_DONE + sse_data({"after": "done"})
    assert list(_sse_events(io.BytesIO(stream))) == events  # [DONE] ends it, nothing after leaks


@SSE_BOUNDED
@given(event=EVENT)
def test_every_event_is_one_data_line_then_a_blank_line(event: dict[str, Any]) -> None:
    frame = sse_data(event)
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    body = frame[len(b"data: "):-2]
    assert b"\n" not in body and b"\r" not in body  # SSE ends lines at CR, LF or CRLF
    assert json.loads(body.decode("utf-8")) == event


@SSE_BOUNDED
@given(events=st.lists(EVENT, min_size=1, max_size=3), junk=st.lists(st.sampled_from([b": ping\n", b"\n", b"event: x\n", b"id: 3\r\n", b"retry: 5\n"]), max_size=4))
def test_the_parser_skips_comments_and_other_fields(events: list[dict[str, Any]], junk: list[bytes]) -> None:
    stream = b"".join(junk) + b"".join(j + sse_data(e) for j, e in zip(junk + [b""] * len(events), events))
    assert list(_sse_events(io.BytesIO(stream))) == events


# ---- the UTF-8 detokenizer ----------------------------------------------------------------------
def detokenize(pieces: list[bytes], stops: list[str]) -> tuple[str, bool]:
    ts = TextStream(stops)
    out = "".join(ts.feed(p) for p in pieces)
    return out + ts.flush(), ts.stopped


@BOUNDED
@given(text=ANY_TEXT, points=CUTS)
def test_any_split_of_valid_utf8_decodes_to_the_text(text: str, points: list[int]) -> None:
    pieces = cut(text.encode("utf-8"), points)
    ts = TextStream()
    emitted = [ts.feed(p) for p in pieces]
    assert "".join(emitted) + ts.flush() == text
    assert all("\ufffd" not in e for e in emitted) or "\ufffd" in text


@BOUNDED
@given(raw=st.binary(max_size=60), points=CUTS)
def test_invalid_bytes_vanish_and_never_become_replacement_characters(raw: bytes, points: list[int]) -> None:
    out, _ = detokenize(cut(raw, points), [])
    assert out == raw.decode("utf-8", errors="ignore")


@BOUNDED
@given(text=TRICKY, stops=st.lists(st.text(alphabet="ab\n中😀", min_size=1, max_size=3), max_size=3), points=CUTS)
def test_output_ends_before_the_earliest_stop_string(text: str, stops: list[str], points: list[int]) -> None:
    out, stopped = detokenize(cut(text.encode("utf-8"), points), stops)
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    if hits:
        assert stopped and out == text[: min(hits)]
    else:
        assert not stopped and out == text


# ---- the fence repairer -------------------------------------------------------------------------
LINES = st.sampled_from(
    ["```", "```python", "~~~", "   ```", "    ```", "````", "``", "```a```", "def f(x):", "  return x", "print(1)", "#include <stdio.h>",
     "SELECT 1;", "text 中文", "", " ", "\r", "- item", "`x`", "~~~~", "```   "]
)
FENCED = st.lists(LINES, max_size=14).map("\n".join)
MARKDOWN = st.one_of(FENCED, FENCED.map(lambda t: t + "\n"), TRICKY)


def repair(pieces: list[str]) -> tuple[str, int]:
    r = FenceRepairer()
    out = "".join(r.feed(p) for p in pieces)
    repaired = r.repaired
    return out + r.flush(), max(repaired, r.repaired)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=MARKDOWN, points=CUTS)
def test_the_repair_does_not_depend_on_how_the_text_was_cut(text: str, points: list[int]) -> None:
    assert repair(cut(text, points)) == repair([text])


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=MARKDOWN)
def test_the_repair_only_adds_a_language_to_bare_opening_fences(text: str) -> None:
    out, repaired = repair([text])
    lines_in, lines_out = text.split("\n"), out.split("\n")
    assert len(lines_in) == len(lines_out)
    changed = 0
    for a, b in zip(lines_in, lines_out):
        if a != b:
            m = re.fullmatch(r"( {0,3})(`{3,}|~{3,})([ \t\r]*)", a)
            assert m, (a, b)
            assert re.fullmatch(re.escape(m.group(1) + m.group(2)) + r"[\w+#.-]+" + re.escape(m.group(3)), b), (a, b)
            changed += 1
    assert changed == repaired
