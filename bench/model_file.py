"""Facts read from the GGUF under test: bytes of weights per token, end-of-generation token ids.

A minimal reader of the GGUF header (key/values and tensor infos) instead of the ``gguf``
package's ``GGUFReader``, which builds numpy views of every vocabulary entry and takes tens of
seconds on a busy 2-core machine; this walks the same bytes in well under a second.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

# Token texts llama.cpp treats as end-of-generation for the common chat templates.
EOG_TEXTS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|fim_pad|>",
             "<|repo_name|>", "<|file_sep|>")

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    pass


class _Cursor:
    def __init__(self, buf: Any):
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise GGUFError("truncated GGUF header")
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> bytes:
        n = self.unpack("Q")
        if self.pos + n > len(self.buf):
            raise GGUFError("truncated GGUF string")
        s = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return s

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, n = self.unpack("I"), self.unpack("Q")
            if etype in _SCALARS and not keep:
                self.pos += n * struct.calcsize("<" + _SCALARS[etype])
                return None
            items = [self.value(etype, keep) for _ in range(n)]
            return items if keep else None
        raise GGUFError(f"unknown GGUF value type {vtype}")


def read_header(path: str | Path, keep_arrays: tuple[str, ...] = ()) -> tuple[dict[str, Any], int]:
    """(metadata, offset of the tensor data). Arrays are kept only for keys in ``keep_arrays``."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        c = _Cursor(mm)
        if bytes(mm[:4]) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        c.pos = 4
        version = c.unpack("I")
        if version < 2:
            raise GGUFError(f"GGUF version {version} is too old")
        n_tensors, n_kv = c.unpack("Q"), c.unpack("Q")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = c.string().decode("utf-8", "replace")
            vtype = c.unpack("I")
            meta[key] = c.value(vtype, keep=key in keep_arrays)
        for _ in range(n_tensors):
            c.string()
            n_dims = c.unpack("I")
            c.pos += 8 * n_dims + 4 + 8  # dims, type, offset
        align = int(meta.get("general.alignment") or 32)
        return meta, (c.pos + align - 1) // align * align


def bytes_per_token(model_path: str | Path) -> int:
    """Bytes of weights read per generated token: the GGUF's tensor data (file minus header).

    Falls back to the file size for a file this reader cannot parse. Qwen2.5 0.5B ties its output
    matrix to the token embeddings, so that matrix is read in full every token: all weights count.
    """
    size = Path(model_path).stat().st_size
    try:
        _, offset = read_header(model_path)
    except (GGUFError, OSError, ValueError):
        return size
    return size - offset if 0 < offset < size else size


def eog_token_ids(model_path: str | Path) -> list[int]:
    """Ids of the end-of-generation tokens (eos, eot and the usual ChatML/FIM stop tokens).

    Used to stop a server from ending a reply early through ``logit_bias`` when it has no
    ``ignore_eos`` option, so both servers generate the same number of tokens.
    """
    try:
        meta, _ = read_header(model_path, keep_arrays=("tokenizer.ggml.tokens",))
    except (GGUFError, OSError, ValueError):
        return []
    ids = {int(meta[k]) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                  "tokenizer.ggml.eom_token_id") if isinstance(meta.get(k), int)}
    wanted = {t.encode() for t in EOG_TEXTS}
    ids.update(i for i, tok in enumerate(meta.get("tokenizer.ggml.tokens") or []) if tok in wanted)
    return sorted(ids)
