"""Model files: finding the default model in the caches, and refusing files llama.cpp would choke on."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import gguf
from xiaoq.config import DEFAULT_REPO, Settings
from xiaoq.engine.models import default_filename, gguf_required_size, resolve_model, validate_gguf
from xiaoq.errors import ModelError

COMMIT = "a" * 40


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_CACHE", "XDG_CACHE_HOME", "XIAOQ_MODEL", "XIAOQ_QUANT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))


def put_in_hf_cache(cache: Path, repo: str, filename: str, data: bytes, ref: bool = True) -> Path:
    """Lay a file out the way huggingface_hub does: blobs/, snapshots/<commit>/ symlink, refs/main."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "blobs").mkdir(parents=True)
    blob = root / "blobs" / "etag123"
    blob.write_bytes(data)
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (snap / filename).symlink_to(blob)
    if ref:
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text(COMMIT)
    return snap / filename


def test_default_model_found_in_hf_home(tmp_path: Path, tiny_gguf: Path) -> None:
    want = put_in_hf_cache(tmp_path / "hf" / "hub", DEFAULT_REPO, default_filename("q4_k_m"), tiny_gguf.read_bytes())
    assert resolve_model(Settings()) == want
    assert validate_gguf(resolve_model(Settings())) == want


def test_hf_hub_cache_wins_over_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    want = put_in_hf_cache(tmp_path / "elsewhere", DEFAULT_REPO, default_filename("q8_0"), b"GGUF")
    assert resolve_model(Settings(quant="q8_0")) == want


def test_snapshot_without_ref_is_still_found(tmp_path: Path) -> None:
    want = put_in_hf_cache(tmp_path / "hf" / "hub", DEFAULT_REPO, default_filename("q4_k_m"), b"GGUF", ref=False)
    assert resolve_model(Settings()) == want


@pytest.mark.parametrize("layout", [
    "hub/models/qwen/Qwen2___5-0___5B-Instruct-GGUF",  # modelscope >= 1.14: MODELSCOPE_CACHE is the root
    "hub/qwen/Qwen2___5-0___5B-Instruct-GGUF",
    "qwen/Qwen2.5-0.5B-Instruct-GGUF",  # older releases: MODELSCOPE_CACHE was the hub itself
])
def test_modelscope_cache_layouts(tmp_path: Path, layout: str) -> None:
    want = tmp_path / "ms" / layout / default_filename("q4_k_m")
    want.parent.mkdir(parents=True)
    want.write_bytes(b"GGUF")
    assert resolve_model(Settings()) == want


def test_missing_default_model_message(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as e:
        resolve_model(Settings())
    msg = e.value.message
    assert "\n" not in msg
    for needle in ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "`xiaoq pull`", "--model /path/to/file.gguf", "XIAOQ_MODEL", str(tmp_path / "hf" / "hub")):
        assert needle in msg


def test_local_path_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_model(Settings(model="~/m.gguf")) == tmp_path / "m.gguf"


def test_repo_colon_file_from_cache(tmp_path: Path) -> None:
    want = put_in_hf_cache(tmp_path / "hf" / "hub", "someone/Other-GGUF", "other-q4.gguf", b"GGUF")
    assert resolve_model(Settings(model="someone/Other-GGUF:other-q4.gguf")) == want
    with pytest.raises(ModelError, match="not in the Hugging Face or ModelScope cache") as e:
        resolve_model(Settings(model="someone/Other-GGUF:missing.gguf"))
    assert "`xiaoq pull --repo someone/Other-GGUF --file missing.gguf`" in e.value.message


def test_unknown_quant(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown quantization 'q9'.*XIAOQ_QUANT"):
        resolve_model(Settings(quant="q9"))


# ---- validate_gguf --------------------------------------------------------------------------


def write_gguf(path: Path, n: int = 1000, arch: str = "llama") -> Path:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_string("general.name", "test")
    w.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    w.add_tensor("first", np.arange(n, dtype=np.float32))
    w.add_tensor("second", np.ones((4, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_required_size_is_exact(tmp_path: Path, tiny_gguf: Path) -> None:
    import mmap

    for p in (tiny_gguf, write_gguf(tmp_path / "w.gguf")):
        with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            reader = gguf.GGUFReader(p)
            end = max(t.data_offset + t.n_bytes for t in reader.tensors)
            assert gguf_required_size(p, buf, len(buf)) == end
        assert validate_gguf(p) == p


@pytest.mark.parametrize("keep", [0, 3, 4, 20, 100, 1000, -1])
def test_truncated_anywhere_is_reported_with_the_path(tmp_path: Path, tiny_gguf: Path, keep: int) -> None:
    data = tiny_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(ModelError) as e:
        validate_gguf(cut)
    assert str(cut) in e.value.message
    assert "truncated" in e.value.message or "not a GGUF" in e.value.message


def test_not_a_gguf(tmp_path: Path) -> None:
    p = tmp_path / "page.gguf"
    p.write_bytes(b"<!DOCTYPE html>" + b"x" * 100)
    with pytest.raises(ModelError, match="not a GGUF.*page.gguf"):
        validate_gguf(p)


def test_bad_version_and_counts(tmp_path: Path, tiny_gguf: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    p = tmp_path / "v.gguf"
    struct.pack_into("<I", data, 4, 99)
    p.write_bytes(data)
    with pytest.raises(ModelError, match="unsupported GGUF version 99"):
        validate_gguf(p)
    data = bytearray(tiny_gguf.read_bytes())
    struct.pack_into("<Q", data, 8, 0)  # zero tensors
    p.write_bytes(data)
    with pytest.raises(ModelError, match="corrupt GGUF header"):
        validate_gguf(p)
    data = bytearray(tiny_gguf.read_bytes())
    struct.pack_into("<Q", data, 16, 10**12)  # absurd metadata count
    p.write_bytes(data)
    with pytest.raises(ModelError, match="corrupt GGUF header"):
        validate_gguf(p)


def test_garbage_after_magic(tmp_path: Path) -> None:
    p = tmp_path / "g.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2, 1) + b"\xff" * 64)
    with pytest.raises(ModelError, match=str(p)):
        validate_gguf(p)


def test_directory_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a file"):
        validate_gguf(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        validate_gguf(tmp_path / "none.gguf")


@pytest.mark.real_model
def test_real_model_is_complete(real_model_path: Path) -> None:
    assert validate_gguf(real_model_path) == real_model_path.absolute()
