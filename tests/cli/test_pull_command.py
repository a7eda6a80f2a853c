"""``xiaoq pull`` against a local server posing as the Hugging Face hub (HF_ENDPOINT), no internet."""

from __future__ import annotations

import re
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Optional

import pexpect

import numpy as np
import pytest

import gguf
from tests.cli.fake_hub import COMMIT, FakeHub
from tests.cli.procs import assert_one_line_error, free_port, run_xiaoq, xiaoq_command
from xiaoq.errors import ModelError

REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
CUT = 1_000_000  # where the fake hub breaks the connection


@pytest.fixture(scope="module")
def big_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("hub") / "big.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blob", np.arange(750_000, dtype=np.float32))  # 3 MB
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def hub_env(cli_env: dict[str, str], url: str) -> dict[str, str]:
    env = dict(cli_env, HF_ENDPOINT=url, HF_HUB_DISABLE_PROGRESS_BARS="0")
    env.pop("HF_HUB_OFFLINE")
    return env


def test_pull_downloads_into_hf_home_and_serve_finds_it(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    with FakeHub({f"{REPO}/qwen2.5-0.5b-instruct-q4_k_m.gguf": data}) as hub:
        r = run_xiaoq(["pull"], hub_env(cli_env, hub.url))
    assert r.returncode == 0, r.stderr
    want = Path(cli_env["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / "qwen2.5-0.5b-instruct-q4_k_m.gguf"
    assert r.stdout.strip() == f"model ready: {want}"
    assert want.read_bytes() == data
    assert ("GET", f"/{REPO}/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf", None) in hub.requests
    # Without --model, the pulled file is what the model resolution now finds (offline).
    from xiaoq.config import Settings
    from xiaoq.engine.models import resolve_model

    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HOME", cli_env["HF_HOME"])
    mp.delenv("HF_HUB_CACHE", raising=False)
    try:
        assert resolve_model(Settings(_env_file=None)) == want
    finally:
        mp.undo()


def test_pull_resumes_a_dropped_connection_with_a_range_request(cli_env: dict[str, str], big_gguf: bytes) -> None:
    name = "qwen2.5-0.5b-instruct-q8_0.gguf"
    with FakeHub({f"{REPO}/{name}": big_gguf}, drop_after=CUT) as hub:
        # In a terminal (a pty), so tqdm draws its progress bar as a user would see it.
        output, status = pexpect.run(shlex.join([*xiaoq_command(), "pull", "--quant", "q8_0"]), env=hub_env(cli_env, hub.url),
                                     withexitstatus=True, timeout=120, encoding="utf-8")
    assert status == 0, output
    match = re.search(r"model ready: (\S+)", output)
    assert match, output
    assert Path(match.group(1)).read_bytes() == big_gguf
    assert range_starts(hub, name) == [None, CUT]  # resumed where the connection broke, not restarted
    assert "connection lost" in output and f"resuming at {CUT:,} bytes" in output
    assert "3.00M/3.00M" in output, output  # the bar reached the end (3,000,128 bytes)
    assert f"{name}: 100%" in output  # the bar names the file
    assert "Traceback" not in output


def test_pull_resumes_across_runs(cli_env: dict[str, str], big_gguf: bytes) -> None:
    name = "qwen2.5-0.5b-instruct-q8_0.gguf"
    files = {f"{REPO}/{name}": big_gguf}
    with FakeHub(files, drop_after=CUT, then_fail=True) as hub:  # the link dies mid-file
        r = run_xiaoq(["pull", "--quant", "q8_0"], hub_env(cli_env, hub.url))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: download of {name} stopped at {CUT:,} of {len(big_gguf):,} bytes"), last
    assert last.endswith("the partial file is kept: run `xiaoq pull` again to resume.")
    assert "connection lost" in r.stderr and r.stdout == ""  # progress notes on stderr only
    partial = list(Path(cli_env["HF_HOME"]).glob("hub/models--*/blobs/*.xiaoq-partial"))
    assert [p.stat().st_size for p in partial] == [CUT]

    with FakeHub(files) as hub:  # the next day, a working link
        r = run_xiaoq(["pull", "--quant", "q8_0"], hub_env(cli_env, hub.url))
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip().removeprefix("model ready: ")).read_bytes() == big_gguf
    assert range_starts(hub, name) == [CUT]  # only the missing bytes travelled
    assert not list(Path(cli_env["HF_HOME"]).glob("hub/models--*/blobs/*.xiaoq-partial"))


def test_ctrl_c_keeps_the_partial_download_for_the_next_pull(cli_env: dict[str, str], big_gguf: bytes) -> None:
    name = "qwen2.5-0.5b-instruct-q8_0.gguf"
    files = {f"{REPO}/{name}": big_gguf}
    home = Path(cli_env["HF_HOME"])
    with FakeHub(files, stall_after=CUT) as hub:
        cmd = xiaoq_command()
        # The link stalls after CUT bytes; the read timeout (10 s by default) must not end the stall
        # before the user's Ctrl-C does, or the pull resumes and finishes on its own.
        env = dict(hub_env(cli_env, hub.url), HF_HUB_DOWNLOAD_TIMEOUT="120")
        child = pexpect.spawn(cmd[0], [*cmd[1:], "pull", "--quant", "q8_0"], env=env, encoding="utf-8", timeout=60)
        try:
            deadline = time.monotonic() + 60
            while sum(p.stat().st_size for p in home.glob("hub/models--*/blobs/*.xiaoq-partial")) < CUT:
                if not child.isalive() or time.monotonic() > deadline:
                    child.expect(pexpect.EOF, timeout=5)
                    raise AssertionError(f"the pull never stalled at {CUT:,} bytes on disk: {child.before}")
                time.sleep(0.1)
            child.sendcontrol("c")
            child.expect("interrupted: run `xiaoq pull` again to resume the download")
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus == 130
            assert "Traceback" not in child.before
        finally:
            child.terminate(force=True)
    with FakeHub(files) as hub:
        r = run_xiaoq(["pull", "--quant", "q8_0"], hub_env(cli_env, hub.url))
    assert r.returncode == 0, r.stderr
    assert range_starts(hub, name) == [CUT]
    assert Path(r.stdout.strip().removeprefix("model ready: ")).read_bytes() == big_gguf


def test_corrupt_partial_file_is_caught_by_the_checksum(cli_env: dict[str, str], big_gguf: bytes) -> None:
    import hashlib

    name = "qwen2.5-0.5b-instruct-q8_0.gguf"
    etag = hashlib.sha256(big_gguf).hexdigest()  # the fake hub's ETag, like a real LFS file's
    blobs = Path(cli_env["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{etag}.xiaoq-partial").write_bytes(b"\0" * CUT)  # garbage left by something else
    with FakeHub({f"{REPO}/{name}": big_gguf}) as hub:
        r = run_xiaoq(["pull", "--quant", "q8_0"], hub_env(cli_env, hub.url))
    assert_one_line_error(r, 1, "sha256 mismatch", "run `xiaoq pull` again")
    assert not (blobs / f"{etag}.xiaoq-partial").exists()  # so the next run starts clean
    with FakeHub({f"{REPO}/{name}": big_gguf}) as hub:
        assert run_xiaoq(["pull", "--quant", "q8_0"], hub_env(cli_env, hub.url)).returncode == 0


def range_starts(hub: FakeHub, name: str) -> list[Optional[int]]:
    """Where each GET of the file started: None for the whole file, N for ``Range: bytes=N-``."""
    return [int(rng[6:-1]) if rng else None for m, p, rng in hub.requests if m == "GET" and p.endswith(name)]


def test_unreachable_endpoint_is_one_line(cli_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = run_xiaoq(["pull"], hub_env(cli_env, url))
    assert_one_line_error(r, 1, "cannot download", url, "HF_ENDPOINT")


def test_pull_any_repo_and_file_then_serve_it_by_name(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    with FakeHub({"someone/Tiny-GGUF/tiny.gguf": tiny_gguf.read_bytes()}) as hub:
        r = run_xiaoq(["pull", "--repo", "someone/Tiny-GGUF", "--file", "tiny.gguf"], hub_env(cli_env, hub.url))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("/models--someone--Tiny-GGUF/snapshots/" + COMMIT + "/tiny.gguf")
    with socket.socket() as busy:  # past the model (found by name, offline), stopped at the port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = run_xiaoq(["serve", "--model", "someone/Tiny-GGUF:tiny.gguf", "--port", str(busy.getsockname()[1])], cli_env)
    assert_one_line_error(r, 1, "cannot listen")


def test_offline_pull_of_a_pulled_model_succeeds(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    with FakeHub({f"{REPO}/qwen2.5-0.5b-instruct-q4_k_m.gguf": tiny_gguf.read_bytes()}) as hub:
        first = run_xiaoq(["pull"], hub_env(cli_env, hub.url))
    assert first.returncode == 0, first.stderr
    again = run_xiaoq(["pull"], hub_env(cli_env, f"http://127.0.0.1:{free_port()}"))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_missing_file_on_hub_is_one_line(cli_env: dict[str, str]) -> None:
    with FakeHub({}) as hub:
        r = run_xiaoq(["pull", "--quant", "q2_k"], hub_env(cli_env, hub.url))
    assert_one_line_error(r, 1, "qwen2.5-0.5b-instruct-q2_k.gguf", "has no file", "--quant")


def test_bad_quant_is_a_usage_error(cli_env: dict[str, str]) -> None:
    r = run_xiaoq(["pull", "--quant", "q9_k"], cli_env)
    assert_one_line_error(r, 2, "q9_k")


def test_downloaded_garbage_is_rejected(cli_env: dict[str, str]) -> None:
    with FakeHub({f"{REPO}/qwen2.5-0.5b-instruct-q4_0.gguf": b"<html>rate limited</html>" * 4}) as hub:
        r = run_xiaoq(["pull", "--quant", "q4_0"], hub_env(cli_env, hub.url))
    assert_one_line_error(r, 1, "not a GGUF", "qwen2.5-0.5b-instruct-q4_0.gguf")


def test_modelscope_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from xiaoq.engine.download import pull

    monkeypatch.setitem(sys.modules, "modelscope", None)  # makes `import modelscope...` fail
    with pytest.raises(ModelError) as e:
        pull(source="modelscope")
    assert e.value.message == "ModelScope downloads need the optional extra: pip install 'xiaoq[modelscope]'"


def test_modelscope_without_the_extra_via_cli(cli_env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    (blocker / "modelscope").mkdir(parents=True)
    (blocker / "modelscope" / "__init__.py").write_text("raise ImportError('not installed')\n")
    r = run_xiaoq(["pull", "--source", "modelscope"], dict(cli_env, PYTHONPATH=str(blocker)))
    assert_one_line_error(r, 1, "pip install 'xiaoq[modelscope]'")


FAKE_MODELSCOPE = """
import os, shutil
def model_file_download(model_id, file_path, **kwargs):
    if os.environ.get("FAKE_MS_FAIL"):
        raise ConnectionError("Failed to resolve 'www.modelscope.cn'")
    owner, name = model_id.split("/")
    dest = os.path.join(os.environ["MODELSCOPE_CACHE"], "hub", "models", owner, name.replace(".", "___"), file_path)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(os.environ["FAKE_MS_SRC"], dest)
    return dest
"""


@pytest.fixture
def fake_modelscope(tmp_path: Path) -> Path:
    """A stand-in ``modelscope`` package (the real one needs the network and is heavy)."""
    pkg = tmp_path / "fake-ms" / "modelscope"
    (pkg / "hub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "hub" / "__init__.py").write_text("")
    (pkg / "hub" / "file_download.py").write_text(FAKE_MODELSCOPE)
    return pkg.parent


def test_pull_from_modelscope_then_serve_finds_it(cli_env: dict[str, str], tiny_gguf: Path, fake_modelscope: Path) -> None:
    env = dict(cli_env, PYTHONPATH=str(fake_modelscope), FAKE_MS_SRC=str(tiny_gguf))
    r = run_xiaoq(["pull", "--source", "modelscope"], env)
    assert r.returncode == 0, r.stderr
    want = Path(cli_env["MODELSCOPE_CACHE"]) / "hub" / "models" / "qwen" / "Qwen2___5-0___5B-Instruct-GGUF" / "qwen2.5-0.5b-instruct-q4_k_m.gguf"
    assert r.stdout.strip() == f"model ready: {want}"
    # `serve` without --model now gets past the model (and fails later, on the port, on purpose).
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = run_xiaoq(["serve", "--port", str(busy.getsockname()[1])], env)
    assert_one_line_error(r, 1, "cannot listen")


def test_modelscope_network_error_is_one_line(cli_env: dict[str, str], fake_modelscope: Path) -> None:
    r = run_xiaoq(["pull", "--source", "modelscope"], dict(cli_env, PYTHONPATH=str(fake_modelscope), FAKE_MS_FAIL="1"))
    assert_one_line_error(r, 1, "from ModelScope", "modelscope.cn")
