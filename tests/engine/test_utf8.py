"""The incremental detokenizer: whole characters only, no U+FFFD, stop strings cut."""

from __future__ import annotations

from xiaoq.engine.utf8 import TextStream


def feed_all(stream: TextStream, pieces: list[bytes]) -> list[str]:
    out = [stream.feed(p) for p in pieces]
    if not stream.stopped:
        out.append(stream.flush())
    return out


def test_chinese_split_across_tokens_never_emits_half_a_character():
    data = "你好，世界".encode()
    pieces = [data[i : i + 1] for i in range(len(data))]  # one byte per "token"
    s = TextStream()
    out = feed_all(s, pieces)
    assert "".join(out) == "你好，世界"
    assert all("\ufffd" not in o for o in out)
    # Every emitted piece is whole characters: the first two bytes of 你 produce nothing.
    assert out[0] == "" and out[1] == "" and out[2] == "你"


def test_invalid_bytes_are_dropped_not_replaced():
    s = TextStream()
    out = feed_all(s, [b"ok", b"\xff\xfe", b" \xe4\xbd", b"\xa0", b"\x80end"])
    text = "".join(out)
    assert "\ufffd" not in text
    assert text == "ok 你end"


def test_truncated_character_at_end_is_dropped():
    s = TextStream()
    assert s.feed(b"a\xe4\xbd") == "a"
    assert s.flush() == ""


def test_stop_string_is_cut_and_stops():
    s = TextStream(stop=["###"])
    out = [s.feed(p) for p in [b"hello ", b"#", b"#", b"# tail"]]
    assert s.stopped
    assert "".join(out) == "hello "
    assert s.feed(b"more") == ""


def test_partial_stop_prefix_is_released_when_it_diverges():
    s = TextStream(stop=["STOP"])
    assert s.feed(b"ab ST") == "ab "
    assert s.feed(b"O") == ""
    assert s.feed(b"X") == "STOX"
    assert not s.stopped
    assert s.flush() == ""


def test_held_prefix_flushes_at_end():
    s = TextStream(stop=["</end>"])
    assert s.feed(b"x </e") == "x "
    assert s.flush() == "</e"


def test_earliest_of_several_stop_strings_wins():
    s = TextStream(stop=["bb", "a"])
    assert s.feed(b"xxbba") == "xx"
    assert s.stopped


def test_stop_string_in_chinese_split_bytes():
    s = TextStream(stop=["。"])
    data = "好的。然后".encode()
    out = [s.feed(data[i : i + 1]) for i in range(len(data)) if not s.stopped]
    assert "".join(out) == "好的"
    assert s.stopped
