"""The code runner's two public surfaces: the sandbox page (``/runner``) and Pyodide's files
(``/pyodide/<name>``).

The page is sent with its own headers instead of the app's: a CSP ``sandbox`` without
``allow-same-origin`` gives it an opaque origin (it can neither read the app's storage nor send
the app's Origin), ``connect-src 'none'`` and no ``'self'`` anywhere means no request leaves it
(no fetch, XHR, WebSocket, ``importScripts`` or worker from a URL), and only the app may frame it.
Its one inline script is allowed by hash; ``blob:`` lets it start workers and import Pyodide's
modules from bytes it was handed; ``'wasm-unsafe-eval'`` is what compiling WebAssembly needs (it
allows ``WebAssembly.instantiate``, not ``eval``).

Pyodide's files are served from disk (about 13 MB; the UI's own files are held in memory), only
the names listed in ``PYODIDE_FILES``, with the MIME type WebAssembly streaming requires.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from xiaoq.errors import NotFound

SANDBOX_DIR = Path(__file__).resolve().parent.parent / "sandbox"
PYODIDE_DIR = Path(__file__).resolve().parent.parent / "pyodide"

#: What the runner needs of the npm package, with the type each is served as.
PYODIDE_FILES = {
    "pyodide.mjs": "text/javascript; charset=utf-8",
    "pyodide.asm.mjs": "text/javascript; charset=utf-8",
    "pyodide.asm.wasm": "application/wasm",
    "python_stdlib.zip": "application/zip",
    "pyodide-lock.json": "application/json",
}

router = APIRouter(include_in_schema=False)


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@dataclass(frozen=True)
class RunnerPage:
    """The sandbox page, assembled once: the runner script inline (allowed by its hash) and the
    workers' sources as inert ``text/plain`` blocks the runner turns into blob URLs."""

    html: bytes
    csp: str

    @classmethod
    def build(cls, folder: Path = SANDBOX_DIR) -> "RunnerPage":
        parts = {name: (folder / name).read_text() for name in ("runner.js", "pyworker.js", "jsprelude.js")}
        if any("</script" in text.lower() for text in parts.values()):
            raise ValueError("a sandbox source contains </script")
        html = (
            '<!doctype html><meta charset="utf-8"><title>XiaoQ runner</title>'
            f'<script type="text/plain" id="py-worker">{parts["pyworker.js"]}</script>'
            f'<script type="text/plain" id="js-prelude">{parts["jsprelude.js"]}</script>'
            f'<script>{parts["runner.js"]}</script>'
        )
        csp = (
            "sandbox allow-scripts; default-src 'none'; "
            f"script-src {sha256_source(parts['runner.js'])} blob: 'wasm-unsafe-eval'; worker-src blob:; "
            "connect-src 'none'; frame-src 'none'; img-src 'none'; style-src 'none'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
        )
        return cls(html.encode(), csp)

    def response(self) -> Response:
        headers = {
            "Content-Security-Policy": self.csp,
            "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "no-cache",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        return Response(self.html, media_type="text/html; charset=utf-8", headers=headers)


class Pyodide:
    """Pyodide's files in ``folder`` when all of them are there (else the Run button says how to
    add them)."""

    def __init__(self, folder: Path = PYODIDE_DIR):
        self.folder = folder

    @cached_property
    def version(self) -> Optional[str]:
        """The Python version of this Pyodide, or None when a file is missing."""
        if not all((self.folder / name).is_file() for name in PYODIDE_FILES):
            return None
        try:
            return str(json.loads((self.folder / "pyodide-lock.json").read_text())["info"]["python"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def index(self) -> dict[str, object]:
        if self.version is None:
            raise NotFound("Pyodide is not installed: run `npm ci` in frontend/ (or ./setup.sh --test) and restart XiaoQ")
        sizes = {name: (self.folder / name).stat().st_size for name in PYODIDE_FILES}
        return {"python": self.version, "files": sizes}

    def file(self, name: str) -> FileResponse:
        if self.version is None or name not in PYODIDE_FILES:
            raise NotFound(f"Not found: /pyodide/{name}")
        headers = {"Cache-Control": "no-cache"}
        return FileResponse(self.folder / name, media_type=PYODIDE_FILES[name], headers=headers)


def is_sandbox_path(path: str) -> bool:
    """The runner page and Pyodide's files are public like the UI's own files (the sandbox could
    not send a key, and none of them holds anything of the user's)."""
    return path in ("/runner", "/pyodide/index.json") or path.removeprefix("/pyodide/") in PYODIDE_FILES


@router.get("/runner")
async def runner_page(request: Request) -> Response:
    return request.app.state.runner_page.response()


@router.get("/pyodide/index.json")
async def pyodide_index(request: Request) -> dict[str, object]:
    return request.app.state.pyodide.index()


@router.get("/pyodide/{name}")
async def pyodide_file(name: str, request: Request) -> Response:
    return request.app.state.pyodide.file(name)
