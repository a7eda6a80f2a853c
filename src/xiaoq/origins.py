"""Host and Origin values, parsed and matched the way browsers send them.

Loopback is not a boundary for a browser. DNS rebinding points a name the attacker controls at
127.0.0.1, so the attacker's page becomes same-origin with XiaoQ; but the browser still sends that
name in ``Host``. So the server answers only Host names it knows: IP literals (nothing to rebind),
``localhost`` and ``*.localhost`` (browsers resolve those to loopback themselves, RFC 6761), and the
names the operator lists. A cross-site form or ``fetch`` carries an ``Origin`` the server compares
with ``Host``. No HTTP framework here: the settings validate their lists with these functions too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Optional
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def split_host(value: str) -> tuple[str, Optional[int]]:
    """A ``Host`` header -> (lower-case name or IP without brackets or trailing dot, port or None).
    ValueError when it is not ``name[:port]`` or ``[ipv6][:port]``."""
    v = value.strip().lower()
    if v.startswith("["):
        name, bracket, rest = v[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed host {value!r}")
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text = v.partition(":")
        port_text = port_text if colon else None
    if port_text is not None and (not port_text.isdigit() or int(port_text) > 65535):
        raise ValueError(f"malformed port in host {value!r}")
    name = name[:-1] if name.endswith(".") else name
    if not name:
        raise ValueError(f"empty host {value!r}")
    return name, int(port_text) if port_text is not None else None


def is_loopback_name(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")


def normalize_host_pattern(pattern: str) -> str:
    """An ``--allowed-hosts`` entry: a host name, ``*.domain`` (its subdomains) or ``*`` (any Host:
    only behind a proxy that checks Host itself). ValueError naming the mistake otherwise."""
    p = pattern.strip().lower().rstrip(".")
    body = p[2:] if p.startswith("*.") else p
    if p == "*" or is_ip_literal(p.strip("[]")):
        return p
    if not body or any(ch in body for ch in ":/@ *") or body.startswith("."):
        raise ValueError(f"{pattern!r} is not a host name: give e.g. xiaoq.lan or *.example.com, without scheme or port")
    return p


class HostPolicy:
    """Which ``Host`` headers the server answers."""

    def __init__(self, patterns: Iterable[str] = ()):
        normalized = [normalize_host_pattern(p) for p in patterns]
        self.any = "*" in normalized
        self.names = {p for p in normalized if not p.startswith("*")}
        self.suffixes = tuple(p[1:] for p in normalized if p.startswith("*."))

    def allows(self, host: Optional[str]) -> bool:
        """True for an absent Host (HTTP/1.0: no name to rebind), IP literals, loopback names, listed names."""
        if host is None:
            return True
        try:
            name, _ = split_host(host)
        except ValueError:
            return False
        return self.any or is_ip_literal(name) or is_loopback_name(name) or name in self.names or name.endswith(self.suffixes)


def parse_origin(value: str) -> tuple[str, str, int]:
    """``scheme://host[:port]`` -> (scheme, host, effective port). ValueError for ``null``, other
    schemes, paths, credentials or a bad port."""
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        raise ValueError(f"{value!r} is not an origin: give scheme://host[:port], e.g. https://chat.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r} is not an origin: no path, e.g. https://chat.example.com")
    port = parts.port  # ValueError when out of range
    return scheme, parts.hostname.rstrip("."), port if port is not None else DEFAULT_PORTS[scheme]


def normalize_origin(value: str) -> str:
    """An origin as browsers serialize it (lower case, default port left out): ``--allowed-origins``
    entries are compared with the ``Origin`` header as strings."""
    scheme, host, port = parse_origin(value)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")


def same_origin(origin: str, host: Optional[str]) -> bool:
    """True when ``Origin`` names the host:port the request was sent to. A Host without a port was
    sent to a default port; behind a TLS proxy the origin is https on 443 while the hop to XiaoQ is
    plain http, so either default port matches it."""
    if host is None:
        return False
    try:
        _, o_host, o_port = parse_origin(origin)
        h_name, h_port = split_host(host)
    except ValueError:
        return False
    if o_host != h_name:
        return False
    return o_port == h_port if h_port is not None else o_port in DEFAULT_PORTS.values()
