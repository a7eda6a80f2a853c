"""A local HTTP server posing as the Hugging Face hub for ``xiaoq pull`` tests (no internet here).

``huggingface_hub.hf_hub_download`` asks ``HEAD {endpoint}/{repo}/resolve/{revision}/{file}`` for
the commit (``X-Repo-Commit``), the ``ETag`` and the size, then ``GET``s the same URL, with a
``Range: bytes=N-`` header when it resumes a transfer cut short. This server answers exactly that
for the files it is given, can cut the first GET after ``drop_after`` bytes (to force a resume) and
then answer every request with 503 (``then_fail``: the network went away), and records every
request so tests can check what the client did.

A hostile hub is the same server told to lie: ``etag`` and ``commit`` replace the ``ETag`` and
``X-Repo-Commit`` headers verbatim (``'"../../../.bashrc"'``), and ``redirect`` answers every
request with a 302 to that URL, carrying the metadata in ``X-Linked-Etag`` / ``X-Linked-Size`` as
the real hub does for files stored on its CDN.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Serve ``files`` ({"owner/repo/filename": bytes}) on 127.0.0.1 at a free port."""

    def __init__(
        self,
        files: dict[str, bytes],
        drop_after: Optional[int] = None,
        then_fail: bool = False,
        stall_after: Optional[int] = None,
        etag: Optional[str] = None,
        commit: str = COMMIT,
        redirect: Optional[str] = None,
    ):
        self.files = files
        self.etag = etag
        self.commit = commit
        self.redirect = redirect
        self.drop_after = drop_after
        self.then_fail = then_fail
        self.stall_after = stall_after  # send this much of a GET, then hold the connection open
        self.release = threading.Event()
        self.requests: list[tuple[str, str, Optional[str]]] = []  # (method, path, Range header)
        self._dropped = False
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                hub._answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        rng = h.headers.get("Range")
        self.requests.append((h.command, h.path, rng))
        if self.then_fail and self._dropped:
            h.send_response(503)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        tree = re.fullmatch(r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/main", h.path.split("?")[0])
        if tree:  # list_repo_files (a model that is a whole directory)
            self._answer_tree(h, tree["repo"])
            return
        m = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", h.path.split("?")[0])
        data = self.files.get(f"{m['repo']}/{m['file']}") if m else None
        if data is None:
            h.send_response(404)
            h.send_header("X-Error-Code", "EntryNotFound")
            h.send_header("X-Error-Message", "Entry not found")
            h.send_header("X-Repo-Commit", COMMIT)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        etag = self.etag if self.etag is not None else '"' + hashlib.sha256(data).hexdigest() + '"'
        if self.redirect is not None:
            h.send_response(302)
            h.send_header("Location", self.redirect)
            h.send_header("X-Repo-Commit", self.commit)
            h.send_header("X-Linked-Etag", etag)
            h.send_header("X-Linked-Size", str(len(data)))
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        start = 0
        if rng and (rm := re.fullmatch(r"bytes=(\d+)-", rng)):
            start = int(rm.group(1))
        part = data[start:]
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", self.commit)
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Disposition", f'attachment; filename="{m["file"].rsplit("/", 1)[-1]}";')
        h.send_header("Content-Length", str(len(part)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if not body:
            return
        if self.drop_after is not None and not self._dropped and not start:
            # Send part of the body, then hang up: the client must resume with a Range request.
            self._dropped = True
            h.wfile.write(part[: self.drop_after])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)  # socket.SHUT_RDWR
            return
        if self.stall_after is not None and not start:
            h.wfile.write(part[: self.stall_after])
            h.wfile.flush()
            self.release.wait(timeout=60)  # a slow link: the client decides what happens next
            h.close_connection = True
            return
        h.wfile.write(part)

    def _answer_tree(self, h: BaseHTTPRequestHandler, repo: str) -> None:
        entries = [
            {"type": "file", "path": key[len(repo) + 1:], "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            for key, data in self.files.items() if key.startswith(repo + "/")
        ]
        body = json.dumps(entries).encode() if entries else b'{"error": "Repository not found"}'
        h.send_response(200 if entries else 404)
        if not entries:
            h.send_header("X-Error-Code", "RepoNotFound")
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
