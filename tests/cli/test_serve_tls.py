"""``xiaoq serve --tls-cert/--tls-key``: HTTPS from uvicorn with a certificate made in the test."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
import urllib.request
import json
from pathlib import Path

import pytest

from tests.cli.procs import assert_one_line_error, free_port, run_xiaoq, start_server, stop


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def _https_health(port: int, ctx: ssl.SSLContext, proc, deadline_s: float = 90) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.communicate()[1]}")
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", context=ctx, timeout=5) as r:
                if r.status == 200:
                    return json.loads(r.read())
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.25)
    pytest.fail("HTTPS /health never answered")


def test_serve_speaks_https_with_the_given_certificate(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    proc = start_server(["--model", str(tiny_gguf), "--port", str(port), "--ctx", "512", "--tls-cert", str(cert), "--tls-key", str(key), "--asr", "off"], cli_env, serve_proc)
    ctx = ssl.create_default_context(cafile=str(cert))
    assert _https_health(port, ctx, proc)["status"] == "ok"
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):  # plain HTTP is not served
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
    status, err = stop(proc)
    assert status == 0, err
    assert f"https://127.0.0.1:{port}" in err
    assert "XiaoQ: voice: speech recognition unavailable (Speech recognition is off on this server (--asr off)); speech synthesis espeak" in err


def test_tls_settings_errors_are_one_line(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    r = run_xiaoq(["serve", "--model", str(tiny_gguf), "--tls-cert", str(cert)], cli_env)
    assert_one_line_error(r, 2, "--tls-cert and --tls-key go together")
    r = run_xiaoq(["serve", "--model", str(tiny_gguf), "--tls-cert", str(cert), "--tls-key", str(tmp_path / "nope.pem")], cli_env)
    assert_one_line_error(r, 2, "--tls-key", "no such file")
    r = run_xiaoq(["serve", "--model", str(tiny_gguf), "--tls-cert", str(key), "--tls-key", str(key)], cli_env)
    assert_one_line_error(r, 2, "cannot load the certificate")
