"""GGUF files that look whole but llama.cpp cannot load: ``xiaoq serve`` and ``xiaoq chat`` exit
non-zero with one ``error:`` line naming the file, never a traceback or a server left running.

(Files cut short or without the GGUF magic are caught before llama.cpp by ``validate_gguf``:
tests/cli/test_cli_errors.py.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.cli.procs import free_port, run_xiaoq, xiaoq_command


def _unknown_architecture(path: Path) -> None:
    writer = gguf.GGUFWriter(path, arch="no-such-architecture")
    writer.add_tensor("weights", np.zeros(16, dtype=np.float32))
    _write(writer)


def _missing_tensors(path: Path) -> None:
    writer = gguf.GGUFWriter(path, arch="qwen2")
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_tensor("token_embd.weight", np.zeros((8, 64), dtype=np.float32))
    _write(writer)


def _no_metadata(path: Path) -> None:
    # The GGUF magic, version 3, no tensors and no metadata at all.
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") * 2)


def _write(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


GARBAGE = {"unknown_architecture": _unknown_architecture, "missing_tensors": _missing_tensors, "no_metadata": _no_metadata}
#: What the one line must say about the cause.
CAUSE = {"unknown_architecture": "unknown model architecture", "missing_tensors": "key not found", "no_metadata": "corrupt GGUF header"}


def _assert_one_error_line(r: subprocess.CompletedProcess[str], path: Path) -> str:
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr + r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr[-2000:]
    assert str(path) in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_serve_and_chat_refuse_a_gguf_llama_cpp_cannot_load(cli_env: dict[str, str], tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.gguf"
    GARBAGE[kind](path)
    serve = subprocess.run([*xiaoq_command(), "serve", "--model", str(path), "--port", str(free_port())],
                           env=cli_env, capture_output=True, text=True, timeout=90)
    line = _assert_one_error_line(serve, path)
    assert CAUSE[kind] in line, line
    chat = run_xiaoq(["chat", "--model", str(path)], cli_env, timeout=90)
    assert CAUSE[kind] in _assert_one_error_line(chat, path)
    print(f"\n{kind}: serve exit {serve.returncode}: {line}")
