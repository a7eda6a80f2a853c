"""``xiaoq pull`` against a hub (or mirror) that lies: what the server sends never decides where a
file is written. Each refusal is one CLI line, and nothing appears outside the cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.cli.fake_hub import COMMIT, FakeHub
from tests.cli.procs import assert_one_line_error, run_xiaoq
from tests.cli.test_pull_command import REPO, hub_env

NAME = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
#: From ``<HF_HOME>/hub/models--…/blobs/`` four levels up is the test's own tmp_path.
ESCAPE = "../../../../pwned"


def files_outside_cache(root: Path, cache: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not p.is_dir() and cache not in p.parents}


def pull_from(hub: FakeHub, cli_env: dict[str, str]):  # type: ignore[no-untyped-def]
    return run_xiaoq(["pull"], hub_env(cli_env, hub.url))


@pytest.mark.parametrize(
    "etag",
    [f'"{ESCAPE}"', f'W/"{ESCAPE}"', '"' + "a" * 63 + '/"', '"' + "A" * 64 + '"', '""', '"' + "a" * 64 + '\\u0000"'],
    ids=["traversal", "weak-traversal", "slash", "upper-case", "empty", "nul-text"],
)
def test_an_etag_that_is_not_a_hash_is_refused(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path, etag: str) -> None:
    cache = Path(cli_env["HF_HOME"])
    before = files_outside_cache(tmp_path, cache)
    with FakeHub({f"{REPO}/{NAME}": tiny_gguf.read_bytes()}, etag=etag) as hub:
        r = pull_from(hub, cli_env)
        gets = [p for m, p, _ in hub.requests if m == "GET"]
    assert_one_line_error(r, 1, "ETag", "40 or 64 hex")
    assert files_outside_cache(tmp_path, cache) == before
    assert not list(tmp_path.rglob("pwned*"))
    assert gets == []  # refused before a byte of the body was asked for


def test_a_commit_that_is_not_a_hash_is_refused(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path) -> None:
    cache = Path(cli_env["HF_HOME"])
    before = files_outside_cache(tmp_path, cache)
    with FakeHub({f"{REPO}/{NAME}": tiny_gguf.read_bytes()}, commit="../../../../pwned") as hub:
        r = pull_from(hub, cli_env)
    assert_one_line_error(r, 1, "commit", "40 hex")
    assert files_outside_cache(tmp_path, cache) == before
    assert not list(tmp_path.rglob("pwned*"))


def test_a_redirect_carrying_a_hostile_linked_etag_is_refused(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path) -> None:
    data = tiny_gguf.read_bytes()
    cache = Path(cli_env["HF_HOME"])
    before = files_outside_cache(tmp_path, cache)
    with FakeHub({f"{REPO}/{NAME}": data}) as cdn:
        target = f"{cdn.url}/{REPO}/resolve/main/{NAME}"
        with FakeHub({f"{REPO}/{NAME}": data}, etag=f'"{ESCAPE}"', redirect=target) as hub:
            r = pull_from(hub, cli_env)
        assert [m for m, _, _ in cdn.requests] == []  # the file itself was never fetched
    assert_one_line_error(r, 1, "ETag")
    assert files_outside_cache(tmp_path, cache) == before


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x.gguf"])
def test_a_redirect_to_another_scheme_is_refused(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path, location: str) -> None:
    cache = Path(cli_env["HF_HOME"])
    before = files_outside_cache(tmp_path, cache)
    with FakeHub({f"{REPO}/{NAME}": tiny_gguf.read_bytes()}, redirect=location) as hub:
        r = pull_from(hub, cli_env)
    assert_one_line_error(r, 1, "http")
    assert files_outside_cache(tmp_path, cache) == before
    assert not list(cache.rglob("*.gguf"))


def test_a_weak_git_sha_etag_is_a_valid_small_file(cli_env: dict[str, str], tiny_gguf: Path) -> None:
    """Files not stored in LFS carry the git blob sha (40 hex), sometimes as a weak ETag."""
    data = tiny_gguf.read_bytes()
    git_sha = hashlib.sha1(data).hexdigest()
    with FakeHub({f"{REPO}/{NAME}": data}, etag=f'W/"{git_sha}"') as hub:
        r = pull_from(hub, cli_env)
    assert r.returncode == 0, r.stderr
    storage = Path(cli_env["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}"
    assert (storage / "blobs" / git_sha).read_bytes() == data
    assert (storage / "refs" / "main").read_text() == COMMIT
    assert Path(r.stdout.strip().removeprefix("model ready: ")) == storage / "snapshots" / COMMIT / NAME


def test_a_filename_that_climbs_out_of_the_snapshot_is_refused(tmp_path: Path) -> None:
    from xiaoq.engine.download import confined
    from xiaoq.errors import ModelError

    root = tmp_path / "cache"
    assert confined(root / "snapshots" / COMMIT / "a.gguf", root) == root / "snapshots" / COMMIT / "a.gguf"
    with pytest.raises(ModelError, match="outside the model cache"):
        confined(root / "snapshots" / COMMIT / ".." / ".." / ".." / "x.gguf", root)
    (tmp_path / "elsewhere").mkdir()
    (root / "blobs").mkdir(parents=True)
    (root / "blobs" / "link").symlink_to(tmp_path / "elsewhere")  # a symlink planted in the cache
    with pytest.raises(ModelError, match="outside the model cache"):
        confined(root / "blobs" / "link" / "f", root)
