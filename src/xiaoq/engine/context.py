"""A thin, typed wrapper over llama.cpp's C API (through llama-cpp-python's ``llama_cpp.llama_cpp``).

Why the low-level API: llama-cpp-python's ``Llama`` class drives one sequence behind one lock. Serving
several users at once needs what llama-server does: one context holding several sequences, one
``llama_decode`` per step over a batch that mixes them, per-sequence KV operations and per-sequence
state save/restore. This module owns the raw pointers; :mod:`.scheduler` owns the policy.

Only the scheduler thread calls the mutating methods (decode, memory, state, sampling). Tokenizing
and detokenizing only read the vocabulary and may run on any thread.
"""

from __future__ import annotations

import ctypes
import os
import random
from pathlib import Path
from typing import Optional, Sequence

import llama_cpp.llama_cpp as C

from ..errors import EngineError, ModelError
from .types import SamplingParams
from . import model_pages
from .llama_logs import LIBC, init_backend, quiet_llama_logs, recent_errors

#: Deterministic mode's ubatch cap: flash attention takes a tiled path from 64 query rows up.
DETERMINISTIC_UBATCH = 32
#: KV cache data types by the names the settings use.
KV_TYPES = {"f32": C.GGML_TYPE_F32, "f16": C.GGML_TYPE_F16, "q8_0": C.GGML_TYPE_Q8_0, "q5_1": C.GGML_TYPE_Q5_1,
            "q5_0": C.GGML_TYPE_Q5_0, "q4_1": C.GGML_TYPE_Q4_1, "q4_0": C.GGML_TYPE_Q4_0, "iq4_nl": C.GGML_TYPE_IQ4_NL}
_UNQUANTIZED = {"f32", "f16"}


def kv_type_id(name: str) -> int:
    """The ggml type of a KV cache type name, or a ModelError naming the accepted ones."""
    try:
        return KV_TYPES[name]
    except KeyError:
        raise ModelError(f"Unknown KV cache type {name!r}: use one of {', '.join(KV_TYPES)}") from None


def check_kv_types(type_k: str, type_v: str, flash_attn: Optional[bool]) -> None:
    """llama.cpp stores a quantized V cache only with flash attention (its non-flash path multiplies
    by V transposed, which quantized blocks cannot be): say so before it fails obscurely."""
    kv_type_id(type_k)
    kv_type_id(type_v)
    if type_v not in _UNQUANTIZED and flash_attn is False:
        raise ModelError(f"A quantized V cache (--kv-type-v {type_v}) needs flash attention, which is off; "
                         "use --kv-type-v f16 or turn flash attention on")


#: A native ``bool (*)(void *)`` that reads one byte: libc's ``strlen`` on a two-byte buffer
#: ``[flag, 0]`` returns 0 or 1 in the return register, which is the C ABI's ``bool`` (x86-64 and
#: arm64 alike). Why native: ggml calls the abort callback after every graph node on its first
#: compute thread while the others wait at a barrier; a Python callback would take the GIL there
#: (a wait of up to the interpreter's switch interval, per node, while the event loop runs).
_FLAG_READER = C.ggml_abort_callback(ctypes.cast(LIBC.strlen, ctypes.c_void_p).value)


class AbortFlag:
    """llama.cpp's abort callback for one context: :meth:`raise_` makes the running
    ``llama_decode`` stop after its current graph node and return 2; llama.cpp then removes the
    aborted ubatch's positions from the KV cache, so the sequences are as before the call.

    The scheduler raises it only while a step holds the tokens of one cancelled request (a
    prefill step of up to ``--prefill-batch`` tokens takes seconds on 2 cores: Stop must not wait
    for it)."""

    def __init__(self) -> None:
        self._buf = ctypes.create_string_buffer(2)

    def install(self, ctx: object) -> None:
        C.llama_set_abort_callback(ctx, _FLAG_READER, ctypes.cast(self._buf, ctypes.c_void_p))  # type: ignore[arg-type]

    def raise_(self) -> None:
        self._buf[0] = 1

    def lower(self) -> None:
        self._buf[0] = 0


class Batch:
    """One reusable ``llama_batch`` (allocated once; a step only rewrites its arrays)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.raw = C.llama_batch_init(capacity, 0, 1)
        self._token = self.raw.token
        self._pos = self.raw.pos
        self._logits = self.raw.logits
        self._seq = [self.raw.seq_id[i] for i in range(capacity)]
        for i in range(capacity):
            self.raw.n_seq_id[i] = 1
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append one token; returns its index in the batch (the logits index when ``logits``)."""
        i = self.n
        self._token[i] = token
        self._pos[i] = pos
        self._seq[i][0] = seq_id
        self._logits[i] = logits
        self.n = i + 1
        return i

    def add_run(self, tokens: Sequence[int], pos0: int, seq_id: int, logits_last: bool) -> int:
        """Append consecutive prompt tokens of one sequence; returns the index of the last one."""
        tok, pos, seq, lg = self._token, self._pos, self._seq, self._logits
        i = self.n
        for k, t in enumerate(tokens):
            tok[i] = t
            pos[i] = pos0 + k
            seq[i][0] = seq_id
            lg[i] = 0
            i += 1
        if logits_last and tokens:
            lg[i - 1] = 1
        self.n = i
        return i - 1

    def free(self) -> None:
        if self.raw is not None:
            C.llama_batch_free(self.raw)
            self.raw = None


#: How many recent tokens the repeat/frequency/presence penalties look at (llama.cpp's default).
PENALTY_LAST_N = 64


class LlamaModel:
    """A loaded model, its vocabulary and ONE context with ``n_seq`` sequence slots."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx_per_seq: int,
        n_seq: int,
        n_batch: int,
        n_threads: int,
        use_mmap: bool = True,
        deterministic: bool = False,
        flash_attn: Optional[bool] = None,
        kv_type_k: str = "f16",
        kv_type_v: str = "f16",
    ):
        check_kv_types(kv_type_k, kv_type_v, flash_attn)
        init_backend()
        self.path = Path(path)
        self.model = None
        self.ctx = None
        self.batch: Optional[Batch] = None
        recent_errors.clear()

        mp = C.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.load_mode = C.LLAMA_LOAD_MODE_MMAP if use_mmap else C.LLAMA_LOAD_MODE_NONE
        self.deterministic = deterministic
        if deterministic:
            # Batch-invariant kernels (see pad_for_invariance): no repacked weights (their gemm
            # for >3 rows rounds differently from the gemv used for fewer), no tiled K-quant matmul.
            # The env switch is read once per process, at the first K-quant matmul.
            os.environ.setdefault("GGML_CPU_TILED_MM", "0")
        mp.use_extra_bufts = not deterministic
        if not self.path.is_file():
            raise ModelError(f"Model file not found: {self.path}")
        from . import early_load

        model = early_load.take(self.path, early_load.key(use_mmap, deterministic))  # begun at `xiaoq serve`'s start
        if not model:
            with quiet_llama_logs():
                model = C.llama_model_load_from_file(str(self.path).encode(), mp)
        if not model:  # again with the logs on, for the reason
            model = C.llama_model_load_from_file(str(self.path).encode(), mp)
        if not model:
            raise ModelError(f"llama.cpp could not load the model {self.path}{self._why()}")
        self.model = model
        if use_mmap:
            # before the KV cache and compute buffers exist, so the process's peak is lower too
            model_pages.release_file_pages(self.path)
        self.vocab = C.llama_model_get_vocab(model)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)

        # Unified KV: the decode kernel then takes any mix of sequences in one ubatch (with separate
        # per-sequence streams, llama.cpp splits a batch into equal-length runs per sequence, which
        # breaks a mixed decode+prefill step into several passes over the weights).
        cp = C.llama_context_default_params()
        # deterministic: one spare sequence holds a filler token, one spare batch place carries it
        extra = 1 if deterministic else 0
        cp.n_ctx = n_ctx_per_seq * n_seq + 256 * extra
        cp.n_batch = n_batch + extra
        # deterministic: ubatches under 64 tokens keep flash attention off its tiled path
        cp.n_ubatch = min(n_batch, DETERMINISTIC_UBATCH) if deterministic else n_batch
        cp.n_seq_max = n_seq + extra
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.kv_unified = True
        cp.type_k = kv_type_id(kv_type_k)
        cp.type_v = kv_type_id(kv_type_v)
        self.kv_types = (kv_type_k, kv_type_v)
        if flash_attn is not None:
            cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else C.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.no_perf = True
        cp.embeddings = False
        with quiet_llama_logs():
            ctx = C.llama_init_from_model(model, cp)
        if not ctx:  # again with the logs on, for the reason
            ctx = C.llama_init_from_model(model, cp)
        if not ctx:
            C.llama_model_free(model)
            self.model = None
            hint = "" if kv_type_v in _UNQUANTIZED else f" (--kv-type-v {kv_type_v} needs flash attention)"
            raise ModelError(f"llama.cpp could not create a context for {self.path}{self._why()}{hint}")
        self.ctx = ctx
        self.abort = AbortFlag()
        self.abort.install(ctx)
        self.mem = C.llama_get_memory(ctx)
        self.n_ctx_total = C.llama_n_ctx(ctx)
        self.n_seq = n_seq
        self.n_batch = n_batch
        self.n_ubatch = cp.n_ubatch
        self.filler_seq = n_seq if deterministic else -1
        self.batch = Batch(n_batch + extra)

        self.add_bos = bool(C.llama_vocab_get_add_bos(self.vocab))
        self.bos_id = C.llama_vocab_bos(self.vocab)
        self.eos_id = C.llama_vocab_eos(self.vocab)
        #: The end-of-generation tokens a chat model emits (Qwen: <|im_end|>, <|endoftext|>).
        self.eog_ids = sorted({t for t in (self.eos_id, C.llama_vocab_eot(self.vocab)) if t >= 0})
        self.bos_text = self._token_text(self.bos_id)
        self.eos_text = self._token_text(self.eos_id)
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}

    @staticmethod
    def _why() -> str:
        """The cause llama.cpp logged (``error loading model: <cause>``), not its closing
        "failed to load model" line."""
        errs = [e for e in recent_errors if e and "failed to load model" not in e]
        if not errs:
            return ""
        why = errs[-1]
        marker = "error loading model: "
        return ": " + (why[why.rindex(marker) + len(marker):] if marker in why else why)

    # ---- metadata ---------------------------------------------------------------------------
    def meta(self, key: str) -> Optional[str]:
        buf = ctypes.create_string_buffer(256)
        n = C.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            C.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def chat_template(self) -> Optional[str]:
        ptr = C.llama_model_chat_template(self.model, None)
        return ptr.decode("utf-8", errors="replace") if ptr else None

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = C.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    # ---- tokens (any thread) ----------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (C.llama_token * cap)()
        n = C.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (C.llama_token * cap)()
            n = C.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
            if n < 0:
                raise EngineError("tokenization failed")
        return buf[:n]

    def token_bytes(self, token: int) -> bytes:
        """The bytes a generated token stands for; control tokens render as nothing."""
        piece = self._pieces.get(token)
        if piece is None:
            buf = self._piece_buf
            n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            piece = buf.raw[:n]
            self._pieces[token] = piece
        return piece

    def is_eog(self, token: int) -> bool:
        v = self._eog.get(token)
        if v is None:
            v = self._eog[token] = bool(C.llama_vocab_is_eog(self.vocab, token))
        return v

    # ---- decoding (scheduler thread) --------------------------------------------------------
    def decode(self) -> int:
        """Run the current batch; 0 on success (llama.cpp's return code otherwise)."""
        assert self.batch is not None
        self.batch.raw.n_tokens = self.batch.n
        return C.llama_decode(self.ctx, self.batch.raw)

    @property
    def threads(self) -> int:
        """Threads llama.cpp decodes with now."""
        return int(C.llama_n_threads(self.ctx))

    def set_threads(self, n: int) -> None:
        """Decode (and prefill) on ``n`` threads from the next ``llama_decode`` on."""
        C.llama_set_n_threads(self.ctx, n, n)

    def warmup(self) -> None:
        """One throwaway decode (as llama-server does), so the first user does not pay for the
        compute graph's allocation and the weights' first page-in (of the pages :meth:`__init__`
        dropped: those of the weights it computes with)."""
        b = self.batch
        assert b is not None
        b.clear()
        b.add(self.bos_id if self.bos_id >= 0 else 0, 0, 0, True)
        with quiet_llama_logs():  # its graph build logs ~860 lines
            self.decode()
        C.llama_memory_clear(self.mem, True)
        b.clear()

    def pad_for_invariance(self) -> None:
        """Deterministic mode: never let llama.cpp run a 1-token ubatch.

        With one query token and >= 512 KV cells, ggml's CPU flash attention splits the KV range
        across threads and merges partial softmaxes, which rounds differently from the row-wise
        path every multi-token ubatch takes. A filler token on a spare sequence (masked from every
        real sequence) keeps a lone decode on the row-wise path, so a stream's tokens do not
        depend on whether other streams happened to share its steps.
        """
        b = self.batch
        assert b is not None
        if self.filler_seq >= 0 and b.n % self.n_ubatch == 1:
            self.seq_rm(self.filler_seq)
            b.add(self.bos_id if self.bos_id >= 0 else 0, 0, self.filler_seq, False)

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        return bool(C.llama_memory_seq_rm(self.mem, seq, p0, p1))

    def seq_pos_max(self, seq: int) -> int:
        """The highest position ``seq`` holds in the KV cache; -1 when it holds no cells."""
        return int(C.llama_memory_seq_pos_max(self.mem, seq))

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        C.llama_memory_seq_cp(self.mem, src, dst, p0, p1)

    def state_get(self, seq: int) -> Optional[ctypes.Array]:
        """Copy one sequence's KV state out (a ctypes byte array, no extra copy)."""
        size = C.llama_state_seq_get_size(self.ctx, seq)
        if size <= 0:
            return None
        buf = (ctypes.c_uint8 * size)()
        n = C.llama_state_seq_get_data(self.ctx, buf, size, seq)
        return buf if n == size else None

    def state_set(self, seq: int, data: ctypes.Array) -> bool:
        """Load a state saved by :meth:`state_get` into ``seq`` (which is cleared first)."""
        self.seq_rm(seq)
        return C.llama_state_seq_set_data(self.ctx, data, len(data), seq) > 0

    # ---- sampling ---------------------------------------------------------------------------
    def make_sampler(self, p: SamplingParams, default_seed: Optional[int], recent: Sequence[int] = ()) -> int:
        """A llama.cpp sampler chain for one request (greedy when temperature is 0)."""
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        add = C.llama_sampler_chain_add
        if p.repeat_penalty != 1.0 or p.frequency_penalty or p.presence_penalty:
            add(chain, C.llama_sampler_init_penalties(
                self.n_vocab, PENALTY_LAST_N, p.repeat_penalty or 1.0, p.frequency_penalty, p.presence_penalty))
        bias = dict(p.logit_bias)
        if p.ignore_eos:
            bias.update({t: float("-inf") for t in self.eog_ids})
        if bias:
            items = [(t, b) for t, b in bias.items() if 0 <= t < self.n_vocab]
            arr = (C.llama_logit_bias * len(items))(*[C.llama_logit_bias(int(t), float(b)) for t, b in items])
            add(chain, C.llama_sampler_init_logit_bias(self.n_vocab, len(items), arr))
        if p.temperature <= 0.0:
            add(chain, C.llama_sampler_init_greedy())
        else:
            if p.top_k and p.top_k > 0:
                add(chain, C.llama_sampler_init_top_k(p.top_k))
            if p.top_p < 1.0:
                add(chain, C.llama_sampler_init_top_p(p.top_p, 1))
            if p.min_p and p.min_p > 0.0:
                add(chain, C.llama_sampler_init_min_p(p.min_p, 1))
            add(chain, C.llama_sampler_init_temp(p.temperature))
            seed = p.seed if p.seed is not None else default_seed
            if seed is None:
                seed = random.getrandbits(32)
            add(chain, C.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        if p.repeat_penalty != 1.0 or p.frequency_penalty or p.presence_penalty:
            for t in list(recent)[-PENALTY_LAST_N:]:  # the prompt's tail counts as "recent" too
                C.llama_sampler_accept(chain, t)
        return chain

    def sample(self, sampler: int, idx: int) -> int:
        return C.llama_sampler_sample(sampler, self.ctx, idx)

    @staticmethod
    def free_sampler(sampler: int) -> None:
        C.llama_sampler_free(sampler)

    # ---- teardown ---------------------------------------------------------------------------
    def close(self) -> None:
        if self.batch is not None:
            self.batch.free()
            self.batch = None
        if self.ctx:
            C.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            C.llama_model_free(self.model)
            self.model = None
