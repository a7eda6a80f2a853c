"""The tiny generated GGUF must be a model real llama.cpp accepts and treats like Qwen2.5.

Every other real-engine test in the suite stands on this file's guarantees: it loads as qwen2,
round-trips UTF-8 (Chinese included) through the byte-level tokenizer, parses ChatML specials,
knows <|im_end|> ends a turn, carries the Qwen2.5 chat template, and generates.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

import llama_cpp
from tests import tinymodel
from tests.tinymodel import build_tiny_gguf


@pytest.fixture(scope="module")
def llm(tiny_gguf: Path) -> Iterator[llama_cpp.Llama]:
    model = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False)
    yield model
    model.close()


# --- the file itself -----------------------------------------------------------------------


def test_build_is_reproducible_per_seed_and_small(tmp_path: Path) -> None:
    a = build_tiny_gguf(tmp_path / "a.gguf", seed=0)
    b = build_tiny_gguf(tmp_path / "b.gguf", seed=0)
    c = build_tiny_gguf(tmp_path / "c.gguf", seed=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert a.stat().st_size < 5 * 1024 * 1024
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_vocab_layout() -> None:
    assert tinymodel.TOKENS[:3] == ["!", '"', "#"]  # GPT-2 byte order, as in Qwen's vocab
    assert len(set(tinymodel.TOKENS)) == tinymodel.N_VOCAB
    for merge in tinymodel.MERGES:
        left, right = merge.split(" ")
        assert left + right in tinymodel.TOKENS


# --- loading and metadata --------------------------------------------------------------------


def test_loads_as_qwen2_with_declared_shape(llm: llama_cpp.Llama) -> None:
    meta = llm.metadata
    assert meta["general.architecture"] == "qwen2"
    assert meta["general.name"] == tinymodel.MODEL_NAME
    assert llm.n_vocab() == tinymodel.N_VOCAB
    assert llm.n_embd() == tinymodel.N_EMBD
    assert llm._model.n_ctx_train() == tinymodel.N_CTX_TRAIN
    assert llm.n_ctx() == 512
    assert meta["qwen2.attention.head_count_kv"] == str(tinymodel.N_HEAD_KV)


def test_chat_template_is_in_metadata_and_renders_chatml(llm: llama_cpp.Llama) -> None:
    template = llm.metadata["tokenizer.chat_template"]
    assert template == tinymodel.QWEN25_CHAT_TEMPLATE
    assert template.startswith("{%- if tools %}")
    rendered = jinja2.Environment().from_string(template).render(
        messages=[{"role": "user", "content": "你好"}], add_generation_prompt=True
    )
    assert rendered == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        "<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = llm.tokenize(rendered.encode(), add_bos=False, special=True)
    assert ids.count(tinymodel.IM_START_ID) == 3
    assert ids.count(tinymodel.IM_END_ID) == 2


# --- tokenizer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["你好 hello", "小Q是一个中文聊天机器人。谢谢！", "  mixed\ttabs\n\nand 🙂 emoji, ümlaut", ""],
)
def test_utf8_round_trip(llm: llama_cpp.Llama, text: str) -> None:
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    assert llm.detokenize(ids) == text.encode("utf-8")


def test_merges_are_applied(llm: llama_cpp.Llama) -> None:
    assert llm.tokenize(" hello".encode(), add_bos=False) == [tinymodel.TOKENS.index("Ġhello")]
    nihao = "".join(tinymodel._bytes_to_unicode()[b] for b in "你好".encode())
    assert llm.tokenize("你好".encode(), add_bos=False) == [tinymodel.TOKENS.index(nihao)]


def test_chatml_specials_parse_only_when_special(llm: llama_cpp.Llama) -> None:
    assert llm.tokenize(b"<|im_start|>", add_bos=False, special=True) == [tinymodel.IM_START_ID]
    assert llm.tokenize(b"<|im_end|>", add_bos=False, special=True) == [tinymodel.IM_END_ID]
    as_text = llm.tokenize(b"<|im_start|>", add_bos=False, special=False)
    assert tinymodel.IM_START_ID not in as_text and len(as_text) > 1
    # Control tokens detokenize to nothing unless asked for.
    assert llm.detokenize([tinymodel.IM_END_ID]) == b""
    assert llm.detokenize([tinymodel.IM_END_ID], special=True) == b"<|im_end|>"


def test_eos_is_im_end_and_no_bos_is_added(llm: llama_cpp.Llama) -> None:
    vocab = llm._model.vocab
    assert llm.token_eos() == tinymodel.IM_END_ID
    assert llama_cpp.llama_vocab_is_eog(vocab, tinymodel.IM_END_ID)
    assert llama_cpp.llama_vocab_is_eog(vocab, tinymodel.ENDOFTEXT_ID)
    assert not llama_cpp.llama_vocab_is_eog(vocab, tinymodel.IM_START_ID)
    assert llm.tokenize(b"hi", add_bos=True) == llm.tokenize(b"hi", add_bos=False)


# --- generation ------------------------------------------------------------------------------


def test_greedy_generation_is_varied_and_runs_to_max_tokens(llm: llama_cpp.Llama) -> None:
    prompt = "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    first = llm.create_completion(prompt, max_tokens=24, temperature=0.0)
    again = llm.create_completion(prompt, max_tokens=24, temperature=0.0)
    choice = first["choices"][0]
    assert choice["finish_reason"] == "length"
    assert first["usage"]["completion_tokens"] == 24
    assert choice["text"] == again["choices"][0]["text"]
    assert len(set(choice["text"])) > 3  # not one token repeated


def test_generated_token_ids_are_varied(llm: llama_cpp.Llama) -> None:
    llm.reset()
    prompt = llm.tokenize(b"hello world", add_bos=False)
    ids = []
    for token in llm.generate(prompt, temp=0.0):
        ids.append(token)
        if len(ids) == 16:
            break
    assert len(set(ids)) >= 4
    assert tinymodel.IM_END_ID not in ids


def test_forced_im_end_stops_generation(llm: llama_cpp.Llama) -> None:
    out = llm.create_completion(
        "hello", max_tokens=16, temperature=0.0, logit_bias={tinymodel.IM_END_ID: 100.0}
    )
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] <= 1
    assert out["choices"][0]["text"] == ""


def test_chat_completion_uses_gguf_template(llm: llama_cpp.Llama) -> None:
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": "你好"}], max_tokens=8, temperature=0.0
    )
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["message"]["role"] == "assistant"
    # prompt = the rendered template (system + user + assistant header) tokenized with specials
    expected = llm.tokenize(
        (
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
        ).encode(),
        add_bos=False,
        special=True,
    )
    assert out["usage"]["prompt_tokens"] == len(expected)


# --- against the real model (and the real_model_path fixture's contract) -----------------------


@pytest.mark.real_model
def test_real_model_shares_template_and_specials(real_model_path: Path, llm: llama_cpp.Llama) -> None:
    real = llama_cpp.Llama(model_path=str(real_model_path), vocab_only=True, verbose=False)
    try:
        assert real.metadata["tokenizer.chat_template"] == tinymodel.QWEN25_CHAT_TEMPLATE
        for ids_of in (lambda m: m.token_eos(), lambda m: m.token_bos()):
            assert real._model.token_get_text(ids_of(real)) == llm._model.token_get_text(ids_of(llm))
        # The tiny vocab spells these words exactly as Qwen's byte-level BPE does.
        text = "你好 hello".encode()
        real_pieces = [real._model.token_get_text(i) for i in real.tokenize(text, add_bos=False)]
        tiny_pieces = [llm._model.token_get_text(i) for i in llm.tokenize(text, add_bos=False)]
        assert tiny_pieces == real_pieces
    finally:
        real.close()


def _run_real_model_test(env_value: str | None) -> subprocess.CompletedProcess[str]:
    """Run the real-model test above in a child pytest with XIAOQ_TEST_MODEL set as given."""
    env = {k: v for k, v in os.environ.items() if k != "XIAOQ_TEST_MODEL"}
    if env_value is not None:
        env["XIAOQ_TEST_MODEL"] = env_value
    target = f"{Path(__file__).name}::test_real_model_shares_template_and_specials"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/{target}"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_real_model_path_skips_when_unset() -> None:
    result = _run_real_model_test(None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "set XIAOQ_TEST_MODEL" in result.stdout


def test_real_model_path_fails_when_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    result = _run_real_model_test(str(missing))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "does not name an existing file" in result.stdout
