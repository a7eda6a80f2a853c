"""Password hashing with the standard library's scrypt (memory-hard, no extra dependency).

A hash is ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<digest b64>``: the cost travels with the hash, so
raising it later leaves old hashes verifiable. 2^15 x 8 x 128 bytes = 32 MiB and 0.10-0.13 s per
guess on one core of the 2-core dev machine (five hashes, load average ~5): slow for a guessing
loop, quick enough for a login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

LOG2_N, R, P = 15, 8, 1
SALT_BYTES, DIGEST_BYTES = 16, 32
MIN_LENGTH, MAX_LENGTH = 8, 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=DIGEST_BYTES)


def check_strength(password: str) -> None:
    """ValueError when a new password is too short (or absurdly long: hashing it costs us)."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"a password has at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    """A new salted hash of ``password``."""
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, LOG2_N, R, P)
    return f"scrypt${LOG2_N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``. A missing or malformed hash is False after the
    same work as a real check, so an unknown username answers no faster than a wrong password."""
    try:
        scheme, log2_n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt" or not 1 <= int(log2_n) <= 20:
            raise ValueError
        expected, salt_bytes, params = base64.b64decode(digest), base64.b64decode(salt), (int(log2_n), int(r), int(p))
    except ValueError:
        _scrypt(password[:MAX_LENGTH], b"\0" * SALT_BYTES, LOG2_N, R, P)
        return False
    return hmac.compare_digest(_scrypt(password[:MAX_LENGTH], salt_bytes, *params), expected)
