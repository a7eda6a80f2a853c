"""The local engine: llama.cpp through its C API, serving several conversations at once.

``LlamaEngine(model_path, settings)`` implements :class:`~xiaoq.engine.types.Engine`. It loads the
model off the event loop, renders chat messages with the model's own template, admits requests
(``Busy`` / ``ContextLengthExceeded`` / ``ModelLoading``) and hands them to the
:class:`~.scheduler.Scheduler` thread, which batches all slots into each ``llama_decode``.

KV sizing: ONE context with ``settings.parallel`` sequences and a unified KV cache of
``settings.ctx * settings.parallel`` cells, so every conversation may use the full ``settings.ctx``
tokens (``n_ctx`` reported = ``settings.ctx``) even when all slots are busy. With Qwen2.5-0.5B that is
12 KiB per cell: 4096 x 4 slots = 192 MiB. Equal-memory comparisons with llama-server therefore use
``-c ctx*parallel -np parallel -kvu``. The KV is unified because llama.cpp then decodes any mix of
sequences (decode tokens + a prefill chunk) in one pass over the weights.

Threads: every ``llama_decode`` runs on the scheduler thread. llama.cpp's CPU backend uses one
OpenMP team per calling thread, and a second team in the process (another engine, or a
llama-cpp-python ``Llama`` decoding on another thread) makes libgomp stop spin-waiting because it
sees more threads than cores: decode loses about a quarter of its speed on two cores.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Any, Optional

from ..config import Settings
from ..errors import ContextLengthExceeded, InvalidRequest, ModelError, ModelLoading
from .context import LlamaModel
from .scheduler import Scheduler
from .template import ChatTemplate
from .types import ChatMessage, Generation, GenerationRequest

log = logging.getLogger(__name__)


class LlamaEngine:
    """Engine over one GGUF model. Create, ``await start()``, ``submit()`` requests, ``await close()``."""

    def __init__(self, model_path: str | Path, settings: Settings, *, deterministic: Optional[bool] = None):
        self.model_path = Path(model_path)
        self.settings = settings
        #: Batch-invariant decoding (see context.LlamaModel.pad_for_invariance): greedy streams give
        #: the same text whatever else runs; costs prefill speed (no repacked/tiled kernels).
        self.deterministic = settings.deterministic if deterministic is None else deterministic
        self.model_name = self.model_path.stem
        self.n_ctx = settings.ctx
        self.n_slots = settings.parallel
        self._model: Optional[LlamaModel] = None
        self._template: Optional[ChatTemplate] = None
        self._scheduler: Optional[Scheduler] = None
        self._ready = False

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        if self._ready:
            return
        await asyncio.to_thread(self._load)  # no decoding here: see Scheduler._run
        assert self._scheduler is not None
        await asyncio.to_thread(self._scheduler.start)
        self._ready = True

    def _load(self) -> None:
        s = self.settings
        try:
            model = LlamaModel(
                self.model_path,
                n_ctx_per_seq=s.ctx,
                n_seq=s.parallel,
                n_batch=s.batch,
                n_threads=s.threads,
                use_mmap=s.mmap,
                deterministic=self.deterministic,
            )
        except ModelError:
            raise
        except Exception as e:  # ctypes / OS errors while loading: one clear message with the path
            raise ModelError(f"llama.cpp could not load the model {self.model_path}: {e}") from e
        self._model = model
        name = model.meta("general.name")
        self.model_name = name.strip() if name and name.strip() else self.model_path.stem
        self._template = ChatTemplate(model.chat_template(), bos_token=model.bos_text, eos_token=model.eos_text)
        self._scheduler = Scheduler(
            model,
            n_slots=s.parallel,
            queue_size=s.queue,
            n_ctx=s.ctx,
            cache_bytes=s.kv_cache_mb * 1024 * 1024,
            default_seed=s.seed,
        )
        if s.kv_disk_mb > 0 and s.kv_cache_mb > 0:  # states evicted from RAM spill to disk
            from .kv_spill import DiskSpill, model_fingerprint

            directory = s.kv_disk_dir() / model_fingerprint(self.model_path)
            self._scheduler.cache.attach_spill(DiskSpill(directory, s.kv_disk_mb * 1024 * 1024))
        log.info("loaded %s (%s): %d slots x %d tokens", self.model_name, self.model_path, s.parallel, s.ctx)

    async def close(self) -> None:
        self._ready = False
        sched, self._scheduler = self._scheduler, None
        if sched is not None:
            await asyncio.to_thread(sched.stop)
            if sched.cache.spill is not None:
                await asyncio.to_thread(sched.cache.spill.close)
        model, self._model = self._model, None
        if model is not None:
            model.close()

    # ---- prompts ------------------------------------------------------------------------------
    def _need_model(self) -> LlamaModel:
        if not self._ready or self._model is None:
            raise ModelLoading()
        return self._model

    def _with_system(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        msgs = list(messages)
        if self.settings.system_prompt and not any(m.get("role") == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.settings.system_prompt})
        return msgs

    def render(self, messages: list[ChatMessage]) -> str:
        """The prompt text for these messages (adds the configured system prompt if none is given)."""
        self._need_model()
        assert self._template is not None
        return self._template.render(self._with_system(messages), add_generation_prompt=True)

    def _prompt_tokens(self, request: GenerationRequest) -> list[int]:
        model = self._need_model()
        if request.prompt is not None:  # a raw prompt comes from our own code: specials allowed
            return self._tokenize_prompt(request.prompt)
        assert self._template is not None
        msgs = self._with_system(request.messages)
        # Message contents are user data: "<|im_start|>system" typed by a user must stay text, not
        # become a control token (prompt injection). Render with placeholders, then tokenize the
        # template's own text with special tokens and each content as plain text.
        nonce = secrets.token_hex(4)
        marks = [f"XQ{nonce}C{i}Z" for i in range(len(msgs))]
        skeleton = self._template.render(
            [{**m, "content": mark} for m, mark in zip(msgs, marks)], add_generation_prompt=True
        )
        pieces = _split_on_marks(skeleton, marks)
        if pieces is None:  # the template transforms contents: tokenize the plain rendering
            return self._tokenize_prompt(self._template.render(msgs, add_generation_prompt=True))
        tokens = self._tokenize_prompt(pieces[0])
        for i, m in enumerate(msgs):
            tokens += model.tokenize(str(m.get("content") or ""), add_special=False, parse_special=False)
            tokens += model.tokenize(pieces[i + 1], add_special=False, parse_special=True)
        return tokens

    def _tokenize_prompt(self, text: str) -> list[int]:
        model = self._need_model()
        # Templates that write the BOS token themselves must not get a second one.
        add_special = model.add_bos and not (model.bos_text and text.startswith(model.bos_text))
        return model.tokenize(text, add_special=add_special, parse_special=True)

    def tokenize(self, text: str) -> list[int]:
        return self._need_model().tokenize(text, add_special=False, parse_special=False)

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self._prompt_tokens(GenerationRequest(messages=messages)))

    # ---- requests -----------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> Generation:
        tokens = self._prompt_tokens(request)
        if not tokens:
            raise InvalidRequest("the prompt is empty")
        max_tokens = max(1, min(request.sampling.max_tokens, self.settings.max_tokens))
        if len(tokens) + max_tokens > self.n_ctx:
            raise ContextLengthExceeded(len(tokens), max_tokens, self.n_ctx)
        sched = self._scheduler
        if sched is None:
            raise ModelLoading()
        gen = Generation(asyncio.get_running_loop(), prompt_tokens=len(tokens))
        sched.enqueue(gen, tokens, request.sampling, max_tokens, request.priority)
        return gen

    def stats(self) -> dict[str, Any]:
        sched = self._scheduler
        if sched is None:
            return {"ready": 0, "slots_total": self.n_slots, "slots_active": 0, "queue_depth": 0}
        c = sched.counters
        steps = c.decode_steps_total
        spill = sched.cache.spill
        stats = {
            "ready": int(self._ready),
            "queue_depth": sched.queue_depth,
            "queue_capacity": sched.queue_size,
            "slots_active": sched.slots_active,
            "slots_total": len(sched.slots),
            "requests_total": c.requests_total,
            "requests_rejected_total": c.requests_rejected_total,
            "requests_finished_total": dict(c.finish),
            "tokens_generated_total": c.tokens_generated_total,
            "prompt_tokens_evaluated_total": c.prompt_tokens_evaluated_total,
            "prompt_tokens_cached_total": c.prompt_tokens_cached_total,
            "decode_steps_total": steps,
            "batch_tokens_total": c.batch_tokens_total,
            "batch_tokens_last": c.batch_tokens_last,
            "batch_tokens_max": c.batch_tokens_max,
            "batch_tokens_mean": round(c.batch_tokens_total / steps, 3) if steps else 0.0,
            "batch_tokens_buckets": c.batch_buckets(),
            "kv_slot_reuse_total": c.kv_slot_reuse_total,
            "kv_seq_copy_total": c.kv_seq_copy_total,
            "kv_cache_hits_total": sched.cache.hits,
            "kv_cache_misses_total": sched.cache.misses,
            "kv_cache_saves_total": c.kv_cache_saves_total,
            "kv_cache_bytes": sched.cache.bytes,
            "kv_cache_entries": len(sched.cache) - (len(spill) if spill is not None else 0),
            "kv_cache_capacity_bytes": sched.cache.max_bytes,
        }
        if spill is not None:  # the disk tier: kv_disk_entries/bytes/capacity/hits/writes/loads/errors
            stats.update(spill.stats())
        return stats


def _split_on_marks(text: str, marks: list[str]) -> Optional[list[str]]:
    """Split ``text`` at each mark (each exactly once, in order); None if the template moved them."""
    out: list[str] = []
    pos = 0
    for mark in marks:
        i = text.find(mark, pos)
        if i < 0 or text.count(mark) != 1:
            return None
        out.append(text[pos:i])
        pos = i + len(mark)
    out.append(text[pos:])
    return out
