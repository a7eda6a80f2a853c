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
import os
import secrets
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Optional, TypeVar

from ..config import Settings, default_system_prompt
from ..errors import ContextLengthExceeded, EngineError, InvalidRequest, ModelError, ModelLoading
from .context import LlamaModel
from .kv_cache import token_key
from .cores import CoreShare
from .scheduler import Scheduler
from .template import ChatTemplate
from .types import ChatMessage, Generation, GenerationRequest

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        #: The load begun by preload() (None: not begun).
        self._loading: Optional["Future[None]"] = None
        self._ready = False
        self._tokenizer_id = self.model_name
        self._failure: Optional[str] = None
        self._failed = asyncio.Event()
        #: Cores lent to speech work take decode threads away (see cores.py).
        self.cores = CoreShare(settings.threads, _cpu_count(settings))
        # Tokenizing runs in worker threads; close() waits for them before freeing the model.
        self._users = 0
        self._users_cv = threading.Condition()
        #: Read a prompt's state from the disk tier on a worker thread before queueing it, so the
        #: scheduler thread never waits for the disk (bench/restore_pause.py turns it off to compare).
        self.prefetch_spilled = True

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready and self._failure is None

    @property
    def tokenizer_id(self) -> str:
        return self._tokenizer_id

    @property
    def failure(self) -> Optional[str]:
        return self._failure

    def preload(self) -> None:
        """Begin loading the model and its warm-up decode now, on a thread of its own; ``start``
        waits for it. ``xiaoq serve`` calls this before it imports the web stack, so llama.cpp's
        load (C code, the GIL released) and the interpreter's imports run on two cores at once
        instead of one after the other."""
        if self._loading is not None:
            return
        self._loading = Future()
        threading.Thread(target=self._load_and_warm, args=(self._loading,), name="xiaoq-model-load",
                         daemon=True).start()

    def _load_and_warm(self, done: "Future[None]") -> None:
        try:
            self._load()
            assert self._scheduler is not None
            self._scheduler.start()  # its warm-up decode; no decoding in _load: see Scheduler._run
        except BaseException as e:  # noqa: BLE001 - handed to start(), which raises it
            done.set_exception(e)
        else:
            done.set_result(None)

    async def start(self) -> None:
        if self._ready:
            return
        self.preload()
        assert self._loading is not None
        await asyncio.wrap_future(self._loading)
        assert self._scheduler is not None
        loop = asyncio.get_running_loop()
        self._scheduler.on_death = lambda message: loop.call_soon_threadsafe(self._died, message)
        if self._scheduler.failure is not None:  # it died before anyone listened
            self._died(self._scheduler.failure)
        self._ready = True

    def _died(self, message: str) -> None:
        self._failure = message
        self._failed.set()

    async def wait_failure(self) -> str:
        await self._failed.wait()
        assert self._failure is not None
        return self._failure

    def _load(self) -> None:
        s = self.settings
        try:
            model = LlamaModel(
                self.model_path,
                n_ctx_per_seq=s.ctx,
                n_seq=s.parallel,
                n_batch=max(s.batch, s.prefill_batch),
                n_threads=s.threads,
                use_mmap=s.mmap,
                deterministic=self.deterministic,
                kv_type_k=s.kv_type_k,
                kv_type_v=s.kv_type_v,
            )
        except ModelError:
            raise
        except Exception as e:  # ctypes / OS errors while loading: one clear message with the path
            raise ModelError(f"llama.cpp could not load the model {self.model_path}: {e}") from e
        template = ChatTemplate(model.chat_template(), bos_token=model.bos_text, eos_token=model.eos_text)
        try:
            template.check()
        except ModelError as e:
            model.close()
            raise ModelError(f"{e.message}: {self.model_path}") from None
        self._model = model
        self._template = template
        name = model.meta("general.name")
        self.model_name = name.strip() if name and name.strip() else self.model_path.stem
        self._tokenizer_id = "|".join(
            str(x) for x in (self.model_name, model.meta("tokenizer.ggml.model"), model.meta("tokenizer.ggml.pre"), model.n_vocab)
        )
        self._scheduler = Scheduler(
            model,
            n_slots=s.parallel,
            queue_size=s.queue,
            n_ctx=s.ctx,
            cache_bytes=s.kv_cache_mb * 1024 * 1024,
            default_seed=s.seed,
            cores=self.cores,
            draft_max=s.lookup_draft,
            park_after=s.park_idle_after,
            batch=s.batch,
            prefill_chunk=s.prefill_chunk,
            prefill_step_ratio=s.prefill_step_ratio,
        )
        if s.kv_disk_mb > 0 and s.kv_cache_mb > 0:  # states evicted from RAM spill to disk
            from .kv_spill import DiskSpill, model_fingerprint

            fingerprint = model_fingerprint(self.model_path, kv_settings(s))
            directory = s.kv_disk_dir() / fingerprint
            self._scheduler.cache.attach_spill(DiskSpill(directory, s.kv_disk_mb * 1024 * 1024, fingerprint))
        log.info("loaded %s (%s): %d slots x %d tokens", self.model_name, self.model_path, s.parallel, s.ctx)

    async def close(self) -> None:
        self._ready = False
        if self._loading is not None:  # a load under way finishes before anything is freed
            try:
                await asyncio.wrap_future(self._loading)
            except Exception:  # noqa: BLE001 - start() reported it
                pass
        sched, self._scheduler = self._scheduler, None
        if sched is not None:
            await asyncio.to_thread(sched.stop)
            if sched.cache.spill is not None:
                await asyncio.to_thread(sched.cache.spill.close)
        await asyncio.to_thread(self._wait_unused, 30.0)
        model, self._model = self._model, None
        if model is not None:
            model.close()

    def lend_core(self) -> ContextManager[None]:
        """Hold a core for other CPU work (a speech job): decoding uses one thread fewer meanwhile
        when its threads would otherwise fill every CPU."""
        return self.cores.lend()

    def call_on_scheduler(self, fn: Callable[[], T], timeout: float = 600.0) -> T:
        """Run ``fn`` on the scheduler thread and wait for it (from any thread but that one):
        how other llama.cpp models (the ``--embed-model`` embedder) share the one decoding thread."""
        sched = self._scheduler
        if sched is None or not self._ready:
            raise ModelLoading()
        return sched.call(fn).result(timeout)

    @contextmanager
    def _use(self) -> Iterator[LlamaModel]:
        """The loaded model, held for a tokenization in a worker thread: ``close`` waits for the
        holders before freeing it, so a late count never reads freed memory."""
        with self._users_cv:
            if not self._ready or self._model is None:
                raise ModelLoading()
            self._users += 1
            model = self._model
        try:
            yield model
        finally:
            with self._users_cv:
                self._users -= 1
                self._users_cv.notify_all()

    def _wait_unused(self, timeout: float) -> None:
        with self._users_cv:
            self._users_cv.wait_for(lambda: self._users == 0, timeout)

    # ---- prompts ------------------------------------------------------------------------------
    def render(self, messages: list[ChatMessage], *, continue_last: bool = False) -> str:
        """The prompt text for exactly these messages (the chat layer decides the system prompt)."""
        with self._use():
            assert self._template is not None
            return self._template.render(messages, add_generation_prompt=True, continue_last=continue_last)

    def _skeleton(self, msgs: list[ChatMessage], continue_last: bool) -> Optional[list[str]]:
        """The template's own text around each content: ``len(msgs) + 1`` pieces, or None when the
        template transforms contents.

        Message contents are user data: "<|im_start|>system" typed by a user must stay text, not
        become a control token (prompt injection). So the template is rendered with placeholders,
        its own text tokenized with special tokens and each content as plain text."""
        assert self._template is not None
        nonce = secrets.token_hex(4)
        marks = [f"XQ{nonce}C{i}Z" for i in range(len(msgs))]
        skeleton = self._template.render(
            [{"role": m["role"], "content": mark} for m, mark in zip(msgs, marks)], add_generation_prompt=True, continue_last=continue_last
        )
        return _split_on_marks(skeleton, marks)

    def _prompt_tokens(self, request: GenerationRequest) -> list[int]:
        with self._use() as model:
            if request.prompt is not None:  # a raw prompt comes from our own code: specials allowed
                return self._tokenize_prompt(model, request.prompt)
            assert self._template is not None
            msgs = request.messages
            pieces = self._skeleton(msgs, request.continue_last)
            if pieces is None:
                text = self._template.render(msgs, add_generation_prompt=True, continue_last=request.continue_last)
                return self._tokenize_prompt(model, text)
            tokens = self._tokenize_prompt(model, pieces[0])
            for m, piece in zip(msgs, pieces[1:]):
                tokens += model.tokenize(str(m.get("content") or ""), add_special=False, parse_special=False)
                tokens += model.tokenize(piece, add_special=False, parse_special=True)
            return tokens

    def _count(self, messages: list[ChatMessage], continue_last: bool = False) -> int:
        """``len(_prompt_tokens(...))`` without tokenizing contents whose count a message carries."""
        with self._use() as model:
            msgs = messages
            pieces = self._skeleton(msgs, continue_last)
            if pieces is None:
                return len(self._prompt_tokens(GenerationRequest(messages=messages, continue_last=continue_last)))
            n = len(self._tokenize_prompt(model, pieces[0]))
            for m, piece in zip(msgs, pieces[1:]):
                known = m.get("tokens")
                n += known if known is not None else len(model.tokenize(str(m.get("content") or ""), add_special=False, parse_special=False))
                n += len(model.tokenize(piece, add_special=False, parse_special=True))
            return n

    @staticmethod
    def _tokenize_prompt(model: LlamaModel, text: str) -> list[int]:
        # Templates that write the BOS token themselves must not get a second one.
        add_special = model.add_bos and not (model.bos_text and text.startswith(model.bos_text))
        return model.tokenize(text, add_special=add_special, parse_special=True)

    def tokenize(self, text: str) -> list[int]:
        with self._use() as model:
            return model.tokenize(text, add_special=False, parse_special=False)

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return self._count(messages)

    async def acount_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return await asyncio.to_thread(self._count, messages)

    # ---- requests -----------------------------------------------------------------------------
    async def submit(self, request: GenerationRequest) -> Generation:
        if self._failure is not None:
            raise EngineError(f"The engine has stopped: {self._failure}")
        tokens = await asyncio.to_thread(self._prompt_tokens, request)
        if not tokens:
            raise InvalidRequest("the prompt is empty")
        max_tokens = max(1, request.sampling.max_tokens)  # capped by the chat layer's policy
        if len(tokens) + max_tokens > self.n_ctx:
            raise ContextLengthExceeded(len(tokens), max_tokens, self.n_ctx)
        sched = self._scheduler
        if sched is None:
            raise ModelLoading()
        spill = sched.cache.spill
        if self.prefetch_spilled and spill is not None:  # on a worker: even len() may scan the directory
            await asyncio.to_thread(spill.prefetch, token_key(tokens))
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
            **sched.chunk.stats(),
            "kv_slot_reuse_total": c.kv_slot_reuse_total,
            "kv_seq_copy_total": c.kv_seq_copy_total,
            "kv_idle_parked_total": c.kv_idle_parked_total,
            "prefill_steps_aborted_total": c.prefill_steps_aborted_total,
            "draft_tokens_total": c.draft_tokens_total,
            "draft_accepted_total": c.draft_accepted_total,
            "kv_cache_hits_total": sched.cache.hits,
            "kv_cache_misses_total": sched.cache.misses,
            "kv_cache_saves_total": c.kv_cache_saves_total,
            "kv_cache_bytes": sched.cache.bytes,
            "kv_cache_entries": len(sched.cache) - (len(spill) if spill is not None else 0),
            "kv_cache_capacity_bytes": sched.cache.max_bytes,
            "decode_threads": sched.decode_threads,
            "cores_lent_total": self.cores.lent_total,
        }
        if spill is not None:  # the disk tier: kv_disk_entries/bytes/capacity/hits/writes/loads/errors
            stats.update(spill.stats())
        return stats


def kv_settings(s: Settings) -> str:
    """What a saved KV state depends on besides the model file: its data types and the llama.cpp
    build that wrote it (a state restored into another layout would be garbage or refused)."""
    from .lowlevel import version

    return f"k={s.kv_type_k}|v={s.kv_type_v}|llama_cpp={version()}"


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


def _cpu_count(settings: Settings) -> int:
    """CPUs the decode threads share: ``--cpus`` when given, else the ones this process may use."""
    pinned = settings.cpu_set()
    if pinned:
        return len(pinned)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
