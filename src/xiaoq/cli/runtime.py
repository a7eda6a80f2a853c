"""Start-up steps shared by ``serve`` and the in-process ``chat``: pin CPUs, find and check the model.

They run before llama.cpp loads anything, so a bad setting or file costs one clear line, not a
model load followed by a C-level log dump.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import click

from xiaoq.config import Settings
from xiaoq.engine.models import resolve_model, validate_gguf
from xiaoq.errors import XiaoQError


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so treat it as exposed


def check_bind(settings: Settings) -> None:
    """Refuse to expose the server beyond this machine without an API key or accounts (unless --insecure)."""
    if not is_loopback(settings.host) and settings.auth_mode() == "none" and not settings.insecure:
        raise click.UsageError(
            f"refusing to listen on {settings.host} without an API key: anyone who can reach it could use it. "
            "Pass --api-key-file FILE (or XIAOQ_API_KEY_FILE, or XIAOQ_API_KEY), or --insecure to allow it anyway."
        )


def tls_options(settings: Settings) -> dict[str, str]:
    """uvicorn's ``ssl_certfile`` / ``ssl_keyfile`` for ``--tls-cert`` / ``--tls-key`` (empty without
    them); UsageError when a file is missing or the pair does not load, before anything else starts."""
    if settings.tls_cert is None or settings.tls_key is None:
        return {}
    import ssl

    for flag, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
        if not path.is_file():
            raise click.UsageError(f"{flag} {path}: no such file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except (ssl.SSLError, OSError) as e:
        raise click.UsageError(f"--tls-cert/--tls-key: cannot load the certificate and key ({e.strerror or e})") from None
    return {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}


def pin_cpus(settings: Settings) -> None:
    """Pin this process (and the llama.cpp threads it will start) to ``--cpus``, before loading."""
    cpus = settings.cpu_set()
    if not cpus:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise click.UsageError("--cpus is not supported on this platform (no sched_setaffinity)")
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    missing = sorted(cpus - set(available))
    if missing:
        raise click.UsageError(
            f"--cpus {settings.cpus}: CPU {', '.join(map(str, missing))} not available to this process "
            f"(available: {', '.join(map(str, available))})"
        )
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as e:
        raise click.UsageError(f"--cpus {settings.cpus}: cannot pin the process: {e.strerror or e}") from None


def model_path(settings: Settings) -> Path:
    """The validated GGUF to load (ModelError, one line, when missing, truncated or not a GGUF)."""
    return validate_gguf(resolve_model(settings))


def url_host(host: str) -> str:
    """The host as it appears in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port for uvicorn (XiaoQError, one line, when the port is taken)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise XiaoQError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "::" takes IPv4 too
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise XiaoQError(f"cannot listen on {url_host(host)}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock
