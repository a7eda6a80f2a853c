"""The code runner's server side (``api/routes_sandbox.py``): the sandbox page carries its own
strict headers while every other page keeps the app's; Pyodide's files come from disk with the
types WebAssembly needs, only the listed names, public like the UI; without them the index says
how to add them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.api.routes_sandbox import PYODIDE_FILES, RunnerPage, sha256_source
from xiaoq.api.web import CONTENT_SECURITY_POLICY
from xiaoq.engine.fake import FakeEngine

from tests.api.helpers import make_settings, wait_ready


def fake_pyodide(folder: Path) -> Path:
    folder.mkdir()
    for name in PYODIDE_FILES:
        (folder / name).write_bytes(b"\0asm" + name.encode() * 50)
    (folder / "pyodide-lock.json").write_text(json.dumps({"info": {"python": "3.14.2"}, "packages": {}}))
    (folder / "secret.db").write_bytes(b"not pyodide")
    return folder


def web_build(folder: Path) -> Path:
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><title>小Q</title>")
    return folder


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(api_key="key")
    app = create_app(settings, FakeEngine(settings), web_dir=web_build(tmp_path / "web"), pyodide_dir=fake_pyodide(tmp_path / "py"))
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def directives(csp: str) -> dict[str, str]:
    return {d.strip().split(" ", 1)[0]: (d.strip().split(" ", 1) + [""])[1] for d in csp.split(";") if d.strip()}


def test_the_runner_page_is_an_opaque_origin_that_may_connect_nowhere(client: TestClient) -> None:
    r = client.get("/runner")  # public: the sandbox cannot send the key, and holds nothing secret
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    d = directives(r.headers["content-security-policy"])
    assert d["sandbox"] == "allow-scripts"  # no allow-same-origin: an opaque origin
    assert d["default-src"] == "'none'" and d["connect-src"] == "'none'"
    assert d["worker-src"] == "blob:"
    assert d["frame-ancestors"] == "'self'" and r.headers["x-frame-options"] == "SAMEORIGIN"
    sources = d["script-src"].split()
    # No script, worker or request may name the server ('self' only says who may frame the page).
    assert [k for k, v in d.items() if "'self'" in v] == ["frame-ancestors"]
    assert "'unsafe-eval'" not in sources and "'unsafe-inline'" not in sources
    assert [s for s in sources if s.startswith("'sha256-")] and "'wasm-unsafe-eval'" in sources
    # The hash is the one inline script's; the workers' sources are inert text/plain blocks.
    scripts = re.findall(r"<script>(.*?)</script>", r.text, re.S)
    assert len(scripts) == 1 and sha256_source(scripts[0]) in sources
    assert r.text.count('<script type="text/plain"') == 2


def test_every_other_page_keeps_the_apps_strict_framing(client: TestClient) -> None:
    for path in ("/", "/pyodide/pyodide.mjs", "/health", "/nothing-here"):
        r = client.get(path)
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert r.headers["x-frame-options"] == "DENY", path
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_pyodide_files_come_from_disk_with_their_types(client: TestClient, tmp_path: Path) -> None:
    r = client.get("/pyodide/pyodide.asm.wasm")
    assert r.status_code == 200 and r.headers["content-type"] == "application/wasm"
    assert r.content == (tmp_path / "py" / "pyodide.asm.wasm").read_bytes()
    assert client.get("/pyodide/pyodide.asm.mjs").headers["content-type"].startswith("text/javascript")
    assert client.get("/pyodide/python_stdlib.zip").headers["content-type"] == "application/zip"
    index = client.get("/pyodide/index.json").json()
    assert index["python"] == "3.14.2" and set(index["files"]) == set(PYODIDE_FILES)
    # Only the listed names: no other file of the folder, no path tricks (the key is required there).
    for path in ("/pyodide/secret.db", "/pyodide/..%2Fweb%2Findex.html", "/pyodide/../web/index.html"):
        assert client.get(path).status_code == 401, path  # not a file of Pyodide: not public either
        r = client.get(path, headers={"Authorization": "Bearer key"})
        assert r.status_code == 404 and "not pyodide" not in r.text, path


def test_without_pyodide_the_index_says_how_to_add_it(tmp_path: Path) -> None:
    settings = make_settings()
    app = create_app(settings, FakeEngine(settings), web_dir=web_build(tmp_path / "web"), pyodide_dir=tmp_path / "none")
    with TestClient(app) as c:
        wait_ready(c)
        r = c.get("/pyodide/index.json")
        assert r.status_code == 404 and "npm ci" in r.json()["error"]["message"]
        assert c.get("/pyodide/pyodide.asm.wasm").status_code == 404
        assert c.get("/runner").status_code == 200  # JavaScript still runs


def test_no_runner_without_the_web_ui(tmp_path: Path) -> None:
    settings = make_settings()
    app = create_app(settings, FakeEngine(settings), web_dir=None, pyodide_dir=fake_pyodide(tmp_path / "py"))
    with TestClient(app) as c:
        wait_ready(c)
        assert c.get("/runner").status_code == 404
        assert c.get("/pyodide/pyodide.asm.wasm").status_code == 404


def test_a_source_that_could_end_its_script_block_is_refused(tmp_path: Path) -> None:
    for name in ("runner.js", "pyworker.js", "jsprelude.js"):
        (tmp_path / name).write_text("// fine\n")
    (tmp_path / "pyworker.js").write_text("'</script><script>alert(1)'")
    with pytest.raises(ValueError):
        RunnerPage.build(tmp_path)
