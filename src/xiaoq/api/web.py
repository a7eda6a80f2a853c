"""Serves the built web UI (``xiaoq/web/``) and the security headers every response carries.

Why not ``StaticFiles``: we want (1) gzip bodies computed once per file, by its first request, not
per request, so a small office server or a Raspberry Pi sends the UI fast, and not at startup, which
is on the way to the first token; (2) long, immutable cache lifetimes for the
content-hashed files under ``assets/`` and ``no-cache`` for ``index.html`` so a new release is picked
up at once; (3) no directory listing and no path tricks: only files that exist in the build are served,
looked up in a dict built at startup.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

#: Model output is untrusted: no inline script, nothing from other origins, no framing. Media may
#: also come from ``blob:`` URLs: spoken answers are fetched with the API key (a plain <audio src>
#: could not send it) and played from a blob the page made itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]

_COMPRESSIBLE = {".html", ".js", ".mjs", ".css", ".svg", ".json", ".txt", ".map", ".webmanifest"}
#: Types the platform's table may lack (Python 3.10 has no .webmanifest; browsers check it).
_MEDIA_TYPES = {".webmanifest": "application/manifest+json"}
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"


@dataclass(frozen=True)
class WebFile:
    """One file of the build, held in memory, with its gzip form once it has been asked for."""

    body: bytes
    compressible: bool
    media_type: str
    etag: str
    cache_control: str

    @functools.cached_property
    def gzipped(self) -> Optional[bytes]:
        """The gzip form (made once; two first requests at once may both make it, harmlessly)."""
        return gzip.compress(self.body, compresslevel=9, mtime=0) if self.compressible else None


#: What a Vite build holds. Anything else found under the web root (a database, its -wal file,
#: KV states, an export) is not part of the UI and is never served.
WEB_SUFFIXES = frozenset(
    {".html", ".js", ".mjs", ".css", ".map", ".json", ".webmanifest", ".txt", ".svg", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".ico", ".woff", ".woff2", ".ttf"}
)


class WebUI:
    """The files of the built UI, indexed by URL path. ``exclude``: folders never served when they
    lie inside the root (the data directory, when someone points it there); the root itself stays
    served, and the suffix list keeps a database beside the UI's files out."""

    def __init__(self, root: Path = WEB_DIR, exclude: Iterable[Path] = ()):
        self.root = root
        self.files: dict[str, WebFile] = {}
        base = root.resolve()
        excluded = [p.resolve() for p in exclude if p.resolve() != base and p.resolve().is_relative_to(base)]
        if (root / "index.html").is_file():
            for path in sorted(root.rglob("*")):
                if is_servable(path, root, excluded):
                    rel = path.relative_to(root).as_posix()
                    self.files["/" + rel] = self._load(path, rel)

    @property
    def available(self) -> bool:
        return "/index.html" in self.files

    @staticmethod
    def _load(path: Path, rel: str) -> WebFile:
        body = path.read_bytes()
        media_type = _MEDIA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if media_type.startswith("text/") or media_type in ("application/javascript", "application/json", "application/manifest+json"):
            media_type += "; charset=utf-8"
        compressible = path.suffix in _COMPRESSIBLE and len(body) > 512
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        cache = IMMUTABLE if rel.startswith("assets/") else NO_CACHE
        return WebFile(body, compressible, media_type, etag, cache)

    def lookup(self, url_path: str) -> Optional[WebFile]:
        if url_path in ("", "/"):
            url_path = "/index.html"
        return self.files.get(url_path)

    def response(self, request: Request, f: WebFile) -> Response:
        headers = {"Cache-Control": f.cache_control, "ETag": f.etag, "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == f.etag:
            return Response(status_code=304, headers=headers)
        body = f.body
        if f.compressible and "gzip" in request.headers.get("accept-encoding", "") and f.gzipped is not None:
            body = f.gzipped
            headers["Content-Encoding"] = "gzip"
        if request.method == "HEAD":  # same headers as GET, Content-Length included, no body
            headers["Content-Length"] = str(len(body))
            body = b""
        return Response(body, media_type=f.media_type, headers=headers)


def is_servable(path: Path, root: Path, excluded: list[Path]) -> bool:
    """A regular file of a web type, not hidden, not a symlink out of the build, not under an excluded folder."""
    if not path.is_file() or path.suffix.lower() not in WEB_SUFFIXES:
        return False
    rel = path.relative_to(root)
    if any(part.startswith(".") for part in rel.parts):
        return False
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        return False
    return not any(real.is_relative_to(folder) for folder in excluded)


def is_web_path(path: str, web: WebUI) -> bool:
    """True for the UI's own static files, which need no API key (the page asks for the key)."""
    return web.lookup(path) is not None


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (pure ASGI, so streaming is untouched)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
