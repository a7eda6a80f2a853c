"""A GGUF's vocabulary and chat template alone (llama.cpp's ``vocab_only`` load), for counting tokens
where another server generates.

With ``--upstream``, XiaoQ still budgets conversations and decides when to summarize, which needs
the model's exact token counts. Loading the vocabulary reads the GGUF's metadata and tokenizer
(a few MB of memory, well under a second), not its weights, and creates no context.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Optional

import llama_cpp.llama_cpp as C

from ..errors import ModelError
from .llama_logs import init_backend
from .template import ChatTemplate
from .types import ChatMessage


class Vocab:
    """Tokenizer and chat template of one GGUF file. Read-only after loading: any thread may use it."""

    def __init__(self, path: Path):
        init_backend()
        if not path.is_file():
            raise ModelError(f"Model file not found: {path}")
        params = C.llama_model_default_params()
        params.vocab_only = True
        params.n_gpu_layers = 0
        self.model = C.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise ModelError(f"llama.cpp could not read the vocabulary of {path}")
        self.vocab = C.llama_model_get_vocab(self.model)
        self.add_bos = bool(C.llama_vocab_get_add_bos(self.vocab))
        self.name = (self.meta("general.name") or "").strip() or path.stem
        ptr = C.llama_model_chat_template(self.model, None)
        self.template = ChatTemplate(
            ptr.decode("utf-8", errors="replace") if ptr else None,
            bos_token=self._text(C.llama_vocab_bos(self.vocab)),
            eos_token=self._text(C.llama_vocab_eos(self.vocab)),
        )

    def meta(self, key: str) -> Optional[str]:
        buf = ctypes.create_string_buffer(512)
        n = C.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if 0 <= n < len(buf) else None

    def _text(self, token: int) -> str:
        raw = C.llama_vocab_get_text(self.vocab, token) if token >= 0 else None
        return raw.decode("utf-8", errors="replace") if raw else ""

    def tokenize(self, text: str, *, parse_special: bool = False) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (C.llama_token * cap)()
        n = C.llama_tokenize(self.vocab, data, len(data), buf, cap, False, parse_special)
        if n < 0:
            buf = (C.llama_token * -n)()
            n = C.llama_tokenize(self.vocab, data, len(data), buf, -n, False, parse_special)
        return buf[: max(n, 0)]

    @property
    def tokenizer_id(self) -> str:
        """The same id the local engine gives this GGUF, so stored counts are shared."""
        n_vocab = C.llama_vocab_n_tokens(self.vocab)
        return "|".join(str(x) for x in (self.name, self.meta("tokenizer.ggml.model"), self.meta("tokenizer.ggml.pre"), n_vocab))

    def count_prompt(self, messages: list[ChatMessage], continue_last: bool = False) -> int:
        """Tokens of the messages rendered with the model's chat template and the assistant cue
        (or the last message left open). A message's ``tokens`` stands for its content."""
        known = sum(m["tokens"] for m in messages if m.get("tokens") is not None)
        plain = [{"role": m["role"], "content": "" if m.get("tokens") is not None else m["content"]} for m in messages]
        text = self.template.render(plain, add_generation_prompt=True, continue_last=continue_last)
        return known + len(self.tokenize(text, parse_special=True)) + (1 if self.add_bos else 0)

    def close(self) -> None:
        if self.model:
            C.llama_model_free(self.model)
            self.model = None
