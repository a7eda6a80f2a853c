"""A tiny, random-weight Qwen2-architecture GGUF, generated on the fly for the test suite.

WHY: every capability must be tested over the REAL llama.cpp engine, but the real 0.5B model is
~400 MB and slow on two cores. This file builds a ~0.5 MB GGUF that llama.cpp loads as a genuine
``qwen2`` model: Qwen2's tensors (GQA, q/k/v biases), the byte-level GPT-2/Qwen2 tokenizer, the
same ChatML special tokens and the real Qwen2.5-Instruct chat template. Its
weights are random (seeded, so runs are reproducible), so what it *says* is gibberish, but
everything around generation (tokenizing, templating, streaming, stopping, cancelling, context
limits, UTF-8 assembly of byte tokens) behaves exactly as with the real model.

Deliberate quirks, so tests are predictable:
- special tokens (and ASCII control bytes) get a large negative output bias, so the model never
  emits ``<|im_end|>``/``<|endoftext|>``/``<tool_call>`` on its own: generation always runs to
  ``max_tokens`` (or a stop string). To exercise the EOS path, force it with a logit bias on
  ``IM_END_ID`` (e.g. ``logit_bias={IM_END_ID: 100.0}``);
- lone high bytes (0x80-0xFF) get a small negative bias, so output is mostly ASCII words and whole
  Chinese characters, yet still sometimes splits UTF-8 across tokens (or leaves invalid UTF-8).

Usage: ``build_tiny_gguf(tmp_path / "tiny.gguf")`` (or the ``tiny_gguf`` fixture in conftest).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

import gguf

MODEL_NAME = "xiaoq-tiny-qwen2"

# Hyper-parameters: Qwen2.5-shaped (GQA 4:2, rope base 1e6, 32k trained context), but tiny.
N_LAYER = 2
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX_TRAIN = 32768
ROPE_FREQ_BASE = 1_000_000.0
RMS_EPS = 1e-6

# Words (byte-level BPE spelling is derived below) that get their own token through merges.
# "Ġ" is how GPT-2 byte-level BPE spells a leading space.
_MERGED_WORDS: tuple[str, ...] = (
    " the", " a", " and", " is", " to", " of", " in", " it", " you", " I",
    " hello", " world", " Qwen", " model", " chat", " test", " fast", " CPU",
    "the", "hello", "Hello", "ing", "er", "\n\n",
    "你好", "我", "是", "的", "小", "中文", "世界", "谢谢", "，", "。",
)

# Special tokens, in Qwen's order, appended after the ordinary vocabulary.
_CONTROL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Qwen marks these two as USER_DEFINED (type 4): matched in text, but not "control".
_USER_DEFINED_TOKENS: tuple[str, ...] = ("<tool_call>", "</tool_call>")

# The real Qwen2.5-Instruct ChatML template (with its tools branch), verbatim from the official
# GGUF's tokenizer.chat_template (Qwen2.5-Coder-Instruct ships the identical text).
QWEN25_CHAT_TEMPLATE = r'''{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
'''


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character map (the alphabet of byte-level BPE)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def _build_vocab() -> tuple[list[str], list[int], list[str]]:
    """Token texts, token types and BPE merges.

    The 256 byte tokens come first, in GPT-2's order (as in Qwen's real vocab), so any UTF-8
    text round-trips. Each merged word is spelled by left-to-right merges ("h e", "he l", ...),
    and every merge result is itself a token, which llama.cpp's BPE requires.
    """
    byte_map = _bytes_to_unicode()
    tokens = list(byte_map.values())
    known = set(tokens)
    merges: list[str] = []
    for word in _MERGED_WORDS:
        pieces = [byte_map[b] for b in word.encode("utf-8")]
        left = pieces[0]
        for right in pieces[1:]:
            merge = f"{left} {right}"
            left += right
            if left not in known:
                known.add(left)
                tokens.append(left)
                merges.append(merge)
    types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    tokens += _CONTROL_TOKENS
    types += [int(gguf.TokenType.CONTROL)] * len(_CONTROL_TOKENS)
    tokens += _USER_DEFINED_TOKENS
    types += [int(gguf.TokenType.USER_DEFINED)] * len(_USER_DEFINED_TOKENS)
    return tokens, types, merges


TOKENS, TOKEN_TYPES, MERGES = _build_vocab()
N_VOCAB = len(TOKENS)
ENDOFTEXT_ID = TOKENS.index("<|endoftext|>")
IM_START_ID = TOKENS.index("<|im_start|>")
IM_END_ID = TOKENS.index("<|im_end|>")
EOS_ID = IM_END_ID
PAD_ID = ENDOFTEXT_ID
# As in the real Qwen GGUF: bos names <|endoftext|> but is never added. Left unset, llama.cpp
# would default a gpt2 vocab's bos to id 11 (a byte token).
BOS_ID = ENDOFTEXT_ID


def _output_bias() -> np.ndarray:
    """Logit offsets that keep random output readable and predictable: control and tool-call
    tokens and ASCII control bytes are never sampled on their own; lone high bytes are rarer."""
    bias = np.zeros(N_VOCAB, dtype=np.float32)
    byte_map = _bytes_to_unicode()
    never = {byte_map[b] for b in [*range(0x20), 0x7F] if b not in (0x09, 0x0A)}
    never.update(_CONTROL_TOKENS + _USER_DEFINED_TOKENS)
    rare = {byte_map[b] for b in range(0x80, 0x100)}
    for tok_id, text in enumerate(TOKENS):
        if text in never:
            bias[tok_id] = -30.0
        elif text in rare:
            bias[tok_id] = -4.0
    return bias


def _tensors(seed: int) -> dict[str, np.ndarray]:
    """Random weights, numpy shapes (= GGML's ne reversed). Scaled like a trained net's
    (1/sqrt(fan_in)) so activations stay O(1); logits std ~ sqrt(N_EMBD)*0.5 = 4, spread
    enough for varied greedy output. The output matrix is NOT tied to the embeddings: with
    tied random weights each token's logit peaks on itself and greedy output loops on one
    token."""
    rng = np.random.default_rng(seed)
    head_dim = N_EMBD // N_HEAD
    n_kv = N_HEAD_KV * head_dim

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def vec(n: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(n) * scale).astype(np.float32)

    ones = np.ones(N_EMBD, dtype=np.float32)
    out: dict[str, np.ndarray] = {
        "token_embd.weight": (rng.standard_normal((N_VOCAB, N_EMBD)) * 0.4).astype(np.float32),
        "output_norm.weight": ones.copy(),
        "output.weight": (rng.standard_normal((N_VOCAB, N_EMBD)) * 0.5).astype(np.float32),
        "output.bias": _output_bias(),
    }
    for i in range(N_LAYER):
        p = f"blk.{i}."
        out[p + "attn_norm.weight"] = ones.copy()
        out[p + "attn_q.weight"] = mat(N_EMBD, N_EMBD)
        out[p + "attn_q.bias"] = vec(N_EMBD, 0.1)
        out[p + "attn_k.weight"] = mat(n_kv, N_EMBD)
        out[p + "attn_k.bias"] = vec(n_kv, 0.1)
        out[p + "attn_v.weight"] = mat(n_kv, N_EMBD)
        out[p + "attn_v.bias"] = vec(n_kv, 0.1)
        out[p + "attn_output.weight"] = mat(N_EMBD, N_EMBD)
        out[p + "ffn_norm.weight"] = ones.copy()
        out[p + "ffn_gate.weight"] = mat(N_FF, N_EMBD)
        out[p + "ffn_up.weight"] = mat(N_FF, N_EMBD)
        out[p + "ffn_down.weight"] = mat(N_EMBD, N_FF)
    return out


def build_tiny_gguf(path: Path, *, seed: int = 0, chat_template: str = QWEN25_CHAT_TEMPLATE, pooling: Optional[int] = None) -> Path:
    """Write the tiny Qwen2 GGUF to ``path`` (atomically: a temp file renamed into place, so a
    reader never sees a half-written model) and return ``path``. Same seed -> same bytes.
    ``chat_template`` replaces the Qwen2.5 template (tests of hostile templates); ``pooling`` (a
    ``gguf.PoolingType``) marks it as an embedding model the way converted embedding GGUFs are
    marked (``qwen2.pooling_type``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, arch="qwen2")
    try:
        writer.add_type("model")
        writer.add_name(MODEL_NAME)
        writer.add_block_count(N_LAYER)
        writer.add_context_length(N_CTX_TRAIN)
        writer.add_embedding_length(N_EMBD)
        writer.add_feed_forward_length(N_FF)
        writer.add_head_count(N_HEAD)
        writer.add_head_count_kv(N_HEAD_KV)
        writer.add_rope_freq_base(ROPE_FREQ_BASE)
        writer.add_layer_norm_rms_eps(RMS_EPS)
        writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
        if pooling is not None:
            writer.add_pooling_type(gguf.PoolingType(pooling))

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("qwen2")
        writer.add_token_list(TOKENS)
        writer.add_token_types(TOKEN_TYPES)
        writer.add_token_merges(MERGES)
        writer.add_eos_token_id(EOS_ID)
        writer.add_pad_token_id(PAD_ID)
        writer.add_bos_token_id(BOS_ID)
        writer.add_add_bos_token(False)
        writer.add_chat_template(chat_template)

        for name, data in _tensors(seed).items():
            writer.add_tensor(name, data)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, path)
    return path
