"""Model files: where the GGUF lives (``resolve_model``) and whether it is whole (``validate_gguf``).

Both run before llama.cpp sees the file, because llama.cpp reports a missing, truncated or foreign
file with a C-level log dump (or a crash) instead of one sentence a user can act on. Nothing here
touches the network: a missing default model is reported with the ``xiaoq pull`` command to run.

The GGUF check walks the header by hand (magic, version, counts, metadata, tensor infos) and compares
the file size with the end of the last tensor's data. It reads only the header (a few MiB for a
151k-token vocabulary) and needs no third-party package: ``gguf.GGUFReader`` memory-maps the whole
file and builds numpy views of every tensor, which is slower and is only a test dependency.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Optional

from xiaoq.config import DEFAULT_MODELSCOPE_REPO, DEFAULT_QUANT, DEFAULT_REPO, Settings
from xiaoq.errors import ModelError

#: Quantizations published in the default repo, as ``xiaoq pull --quant`` accepts them.
QUANTS = ("q2_k", "q3_k_m", "q4_0", "q4_k_m", "q5_0", "q5_k_m", "q6_k", "q8_0", "fp16")

GGUF_MAGIC = b"GGUF"

# ggml tensor type id -> (elements per block, bytes per block); from ggml.h / gguf.constants.
_GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}

# GGUF metadata value types -> fixed size in bytes (8 = string and 9 = array are variable).
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9

# Anything beyond these is a corrupt header, not a model (keeps a garbage count from looping for ever).
_MAX_TENSORS = 1_000_000
_MAX_KV = 1_000_000
_MAX_DIMS = 4


def default_filename(quant: str = DEFAULT_QUANT) -> str:
    """File name of the default model for a quantization, as published in both repos."""
    return f"qwen2.5-0.5b-instruct-{quant.lower()}.gguf"


def check_quant(quant: str) -> str:
    """Normalise a quantization name; ModelError listing the valid ones otherwise."""
    q = quant.strip().lower()
    if q not in QUANTS:
        raise ModelError(f"unknown quantization {quant!r}: choose one of {', '.join(QUANTS)}")
    return q


# ---------------------------------------------------------------------------------------------
# caches (read from the environment at call time, so tests and users can point them anywhere)
# ---------------------------------------------------------------------------------------------


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache huggingface_hub uses: HF_HUB_CACHE, else HF_HOME/hub, else XDG."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def modelscope_caches() -> list[Path]:
    """Where ModelScope may keep models: MODELSCOPE_CACHE (default ~/.cache/modelscope) is the root
    in current releases, with models under ``hub/``; older releases used it as the hub itself."""
    root = Path(os.environ.get("MODELSCOPE_CACHE") or Path.home() / ".cache" / "modelscope").expanduser()
    return [root / "hub", root]


def find_in_hf_cache(repo: str, filename: str) -> Optional[Path]:
    """The cached file of ``repo`` at its ``main`` ref, or any cached snapshot holding it."""
    from huggingface_hub import try_to_load_from_cache

    cache = hf_hub_cache()
    try:
        hit = try_to_load_from_cache(repo, filename, cache_dir=str(cache))
    except Exception:  # a malformed repo id or filename: simply not cached
        hit = None
    if isinstance(hit, str) and os.path.isfile(hit):
        return Path(hit)
    # No refs/main (e.g. pulled at a pinned revision): take the newest snapshot that has the file.
    snapshots = cache / ("models--" + repo.replace("/", "--")) / "snapshots"
    found = [p for p in snapshots.glob(f"*/{filename}") if p.is_file()] if snapshots.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def find_in_modelscope_cache(repo: str, filename: str) -> Optional[Path]:
    """ModelScope keeps ``<hub>/[models/]<owner>/<name>/<file>``; newer versions write '.' as '___'."""
    owner, _, name = repo.partition("/")
    for hub in modelscope_caches():
        for base in (hub / "models", hub):
            for o in (owner, owner.lower()):
                for n in (name.replace(".", "___"), name):
                    p = base / o / n / filename
                    if p.is_file():
                        return p
    return None


def missing_model_message(what: str, pull: str = "xiaoq pull") -> str:
    """The one line a user sees when no model file is there: what is missing and the two ways out."""
    return (
        f"{what}. Download it with `{pull}` (add `--source modelscope` in mainland China), "
        "or pass a local file with `--model /path/to/file.gguf` or XIAOQ_MODEL=/path/to/file.gguf."
    )


def resolve_embed_model(spec: str) -> Path:
    """The validated GGUF of ``--embed-model``: a local path or ``owner/repo:file.gguf`` in the caches."""
    path = Path(spec).expanduser()
    if not path.exists():
        repo, sep, filename = spec.partition(":")
        hit = (find_in_hf_cache(repo, filename) or find_in_modelscope_cache(repo, filename)) if sep and "/" in repo and filename else None
        if hit is None:
            pull = f" (run `xiaoq pull --repo {repo} --file {filename}`)" if sep and "/" in repo else ""
            raise ModelError(f"embedding model not found: {spec}{pull}")
        path = hit
    return validate_gguf(path)


def resolve_model(settings: Settings) -> Path:
    """The GGUF file to load for these settings (not yet validated: see :func:`validate_gguf`).

    ``settings.model`` may be a local path (``~`` expanded), ``owner/repo:file.gguf`` looked up in the
    Hugging Face and ModelScope caches, or empty for the default Qwen2.5-0.5B-Instruct file of
    ``settings.quant``. Never downloads.
    """
    spec = (settings.model or "").strip()
    if spec:
        path = Path(spec).expanduser()
        if path.exists():
            return path
        repo, sep, filename = spec.partition(":")
        if sep and "/" in repo and filename and not spec.startswith(("/", ".", "~")):
            hit = find_in_hf_cache(repo, filename) or find_in_modelscope_cache(repo, filename)
            if hit:
                return hit
            what = f"model {spec!r} is not in the Hugging Face or ModelScope cache ({hf_hub_cache()})"
            raise ModelError(missing_model_message(what, f"xiaoq pull --repo {repo} --file {filename}"))
        raise ModelError(f"model file not found: {path}. Pass an existing .gguf file with --model or XIAOQ_MODEL, or run `xiaoq pull` for the default model.")

    try:
        quant = check_quant(settings.quant)
    except ModelError as e:
        raise ModelError(f"{e.message} (setting --quant / XIAOQ_QUANT)") from None
    filename = default_filename(quant)
    hit = find_in_hf_cache(DEFAULT_REPO, filename) or find_in_modelscope_cache(DEFAULT_MODELSCOPE_REPO, filename)
    if hit:
        return hit
    pull = "xiaoq pull" if quant == DEFAULT_QUANT else f"xiaoq pull --quant {quant}"
    what = f"no model: the default {DEFAULT_REPO} file {filename} is not downloaded (looked in {hf_hub_cache()})"
    raise ModelError(missing_model_message(what, pull))


# ---------------------------------------------------------------------------------------------
# GGUF validation
# ---------------------------------------------------------------------------------------------


class _Truncated(Exception):
    """The header runs past the end of the file."""


class _Corrupt(Exception):
    """The header holds values no GGUF writer produces."""


class _Header:
    """A cursor over the header bytes with GGUF's little- (or big-) endian scalars."""

    def __init__(self, buf: "mmap.mmap | bytes", endian: str):
        self.buf = buf
        self.pos = 0
        self.size = len(buf)
        self.u32 = struct.Struct(endian + "I")
        self.u64 = struct.Struct(endian + "Q")

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Truncated
        self.pos += n

    def read_u32(self) -> int:
        p = self.pos
        self.skip(4)
        return self.u32.unpack_from(self.buf, p)[0]

    def read_u64(self) -> int:
        p = self.pos
        self.skip(8)
        return self.u64.unpack_from(self.buf, p)[0]

    def read_string(self) -> bytes:
        n = self.read_u64()
        p = self.pos
        self.skip(n)
        return bytes(self.buf[p : p + n])

    def skip_string(self) -> None:
        self.skip(self.read_u64())

    def skip_value(self, vtype: int, depth: int = 0) -> None:
        if vtype in _SCALAR_SIZES:
            self.skip(_SCALAR_SIZES[vtype])
        elif vtype == _STRING:
            self.skip_string()
        elif vtype == _ARRAY and depth < 4:
            itype, count = self.read_u32(), self.read_u64()
            if itype in _SCALAR_SIZES:
                self.skip(_SCALAR_SIZES[itype] * count)
            elif itype == _STRING:  # the vocabulary: ~150k strings, so a tight loop
                buf, unpack, pos, end = self.buf, self.u64.unpack_from, self.pos, self.size - 8
                if count > self.size:  # every string needs at least its 8-byte length
                    raise _Truncated
                for _ in range(count):
                    if pos > end:
                        raise _Truncated
                    pos += 8 + unpack(buf, pos)[0]
                self.pos = pos
                self.skip(0)
            else:
                for _ in range(count):
                    self.skip_value(itype, depth + 1)
        else:
            raise _Corrupt(f"unknown metadata value type {vtype}")


def validate_gguf(path: "str | os.PathLike[str]") -> Path:
    """Check that ``path`` is a complete GGUF file; :class:`ModelError` naming the path otherwise.

    Checks: the file exists and is a regular file; it starts with the GGUF magic; the version is 2
    or 3 and the tensor and metadata counts are plausible; the metadata and tensor infos parse; and
    the file is long enough to hold every tensor's data (a download cut short fails here, not inside
    llama.cpp). Returns the path.
    """
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelError(f"model path is not a file: {p}")
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                if f.read(4) == GGUF_MAGIC:
                    raise ModelError(f"model file is truncated ({size} bytes): {p}. Download it again (`xiaoq pull`).")
                raise ModelError(f"not a GGUF model file ({size} bytes, no GGUF header): {p}")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                needed = gguf_required_size(p, buf, size)
    except PermissionError:
        raise ModelError(f"cannot read model file (permission denied): {p}") from None
    except OSError as e:
        raise ModelError(f"cannot read model file {p}: {e.strerror or e}") from None
    if needed > size:
        raise ModelError(f"model file is truncated ({size:,} of {needed:,} bytes; download incomplete?): {p}. Download it again (`xiaoq pull`) or pass another file.")
    return p


def gguf_required_size(p: Path, buf: "mmap.mmap", size: int) -> int:
    """Bytes a complete file needs: header, alignment padding and every tensor's data.

    ModelError when the header itself is foreign, corrupt or cut short. ``size`` bounds the walk.
    """
    if buf[:4] != GGUF_MAGIC:
        raise ModelError(f"not a GGUF model file (wrong magic bytes {bytes(buf[:4])!r}): {p}")
    version = struct.unpack_from("<I", buf, 4)[0]
    endian = "<"
    if version > 0xFFFF:  # a big-endian GGUF (s390x exports) reads as a huge little-endian version
        endian, version = ">", struct.unpack_from(">I", buf, 4)[0]
    if version not in (2, 3):
        raise ModelError(f"unsupported GGUF version {version} (expected 2 or 3): {p}")
    h = _Header(buf, endian)
    h.pos = 8
    n_tensors, n_kv = h.read_u64(), h.read_u64()
    if n_tensors == 0 or n_tensors > _MAX_TENSORS or n_kv > _MAX_KV:
        raise ModelError(f"corrupt GGUF header ({n_tensors} tensors, {n_kv} metadata keys): {p}")
    try:
        alignment = 32
        for _ in range(n_kv):
            key = h.read_string()
            vtype = h.read_u32()
            if key == b"general.alignment" and vtype == 4:
                alignment = h.read_u32()
            else:
                h.skip_value(vtype)
        if alignment == 0 or alignment & (alignment - 1):
            raise _Corrupt(f"alignment {alignment} is not a power of two")
        data_needed = 0
        for _ in range(n_tensors):
            h.skip_string()
            n_dims = h.read_u32()
            if not 1 <= n_dims <= _MAX_DIMS:
                raise _Corrupt(f"a tensor with {n_dims} dimensions")
            n_elems = 1
            for _ in range(n_dims):
                n_elems *= h.read_u64()
            ttype, offset = h.read_u32(), h.read_u64()
            block = _GGML_BLOCKS.get(ttype)
            # An unknown (newer) tensor type: still require its start offset to be inside the file.
            nbytes = (n_elems // block[0]) * block[1] if block else 0
            data_needed = max(data_needed, offset + nbytes)
        data_start = (h.pos + alignment - 1) // alignment * alignment
    except _Truncated:
        raise ModelError(f"model file is truncated ({size:,} bytes, the header is cut short): {p}. Download it again (`xiaoq pull`) or pass another file.") from None
    except _Corrupt as e:
        raise ModelError(f"corrupt GGUF header ({e}): {p}") from None
    return data_start + data_needed
