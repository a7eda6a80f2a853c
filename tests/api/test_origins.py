"""Host and Origin parsing as browsers send them (the pure functions behind the browser guard)."""

from __future__ import annotations

import pytest

from xiaoq.origins import HostPolicy, normalize_origin, same_origin, split_host


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1:8000", ("127.0.0.1", 8000)), ("[::1]:8000", ("::1", 8000)), ("LocalHost.", ("localhost", None)), ("a.lan", ("a.lan", None))],
)
def test_split_host(host: str, expected: tuple) -> None:
    assert split_host(host) == expected


@pytest.mark.parametrize("host", ["", ":80", "a.lan:x", "a.lan:70000", "[::1", "[::1]x"])
def test_malformed_hosts_are_errors(host: str) -> None:
    with pytest.raises(ValueError):
        split_host(host)


def test_host_policy() -> None:
    policy = HostPolicy(["xiaoq.lan", "*.corp.example"])
    assert all(policy.allows(h) for h in ["192.168.1.5:8000", "[fe80::1]", "localhost", "a.b.localhost:1", "XIAOQ.LAN:8000", "x.corp.example", None])
    assert not any(policy.allows(h) for h in ["corp.example", "evil.lan", "xiaoq.lan.evil", "localhost.evil", "", "127.0.0.1.nip.io"])
    assert HostPolicy(["*"]).allows("anything.example")


def test_same_origin_compares_host_and_port() -> None:
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("https://chat.example.com", "chat.example.com")  # TLS proxy, plain hop
    assert same_origin("http://[::1]:8000", "[::1]:8000")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("http://localhost:8000", "127.0.0.1:8000")
    assert not same_origin("https://chat.example.com:8443", "chat.example.com")
    assert not same_origin("null", "127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1:8000", None)


def test_normalize_origin() -> None:
    assert normalize_origin("HTTPS://App.Example.com:443/") == "https://app.example.com"
    assert normalize_origin("http://x.lan:8080") == "http://x.lan:8080"
    for bad in ["null", "app.example.com", "ftp://a.lan", "https://u:p@a.lan", "https://a.lan/x", "https://a.lan:99999"]:
        with pytest.raises(ValueError):
            normalize_origin(bad)
