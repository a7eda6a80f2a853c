"""Continuous batching over llama.cpp sequence slots, in one thread.

The loop, as in llama-server: admit queued requests into free slots; build ONE batch holding the
next token of every decoding slot plus a bounded chunk of every prefilling slot's prompt; call
``llama_decode`` once; sample each slot that produced logits with its own sampler chain; stream the
text. A long prompt is fed in chunks, so other users keep receiving tokens meanwhile. While nobody
decodes, a chunk is as big as the context's batch (``--prefill-batch``: bigger ubatches use the
matmul kernels better); while anyone is decoding it is kept small (:mod:`.chunking` sizes it from
this machine's own step times), which bounds the pause they see.

Cancellation is checked at the top of every step (between decode steps and between prefill chunks),
so a cancelled slot stops within one token and its slot goes to the next queued request at once.

KV reuse, cheapest source first:
1. a free slot whose tokens share the longest prefix with the prompt (its tail is trimmed);
2. a busy slot sharing a prefix (e.g. the same system prompt): copied with ``seq_cp`` (free with the
   unified KV cache: the cells are shared, not copied);
3. the RAM :class:`~.kv_cache.StateCache`: a state restored with ``llama_state_seq_set_data``.
A free slot's contents are saved to the RAM cache before they are overwritten, so conversations
that leave a slot can come back without re-reading their history. At least the prompt's last
token is always evaluated, because sampling needs its logits.

Parking idle slots (``park_after`` seconds, with a RAM cache): the KV cache is unified, and
llama.cpp attends over every cell below the highest one in use (``n_kv``, padded to 256), masked
or not, so the cells of a conversation idle in its slot widen every running stream's step. A slot
idle for ``park_after`` seconds while another slot works is saved to the RAM cache and its cells
are freed (its next turn is restored from there, as after any slot change). Freed cells below a
running sequence would not lower ``n_kv``, so the running sequences are then moved down too: their
state is copied out and back in, which puts their cells, in the same order, into the lowest free
ones. The copy keeps the cells' order and values; attention sums over a sequence's cells in cell
order, so under ``--deterministic`` parking waits until every working slot's KV holds a generated
token: a prompt, and the first token after it (placed where the filler token of
``pad_for_invariance`` was, below the prompt), would otherwise be laid out, and rounded,
differently from a run without parking; past that point greedy output is the same. The delay
spares a conversation whose next turn follows at once.

Only this thread touches the llama.cpp context; ``submit`` (event loop thread) only appends to the
queue under a lock.

Prompt lookup (``draft_max`` > 0, greedy requests only): a decoding slot whose last tokens occurred
earlier in its sequence adds the tokens that followed them there as draft rows after its next
token (:mod:`.lookup`); the step's logits check them all at once, the longest prefix the model
agrees with is kept, with the model's own token after it, and the rest leaves the KV cache. The
output is the one greedy decoding gives, one or more tokens per step.

A failed ``llama_decode`` (a return code) fails the requests in that batch and the loop goes on.
Anything else that escapes the loop (the warm-up failing, an exception in a step) leaves the
context in an unknown state: the scheduler *dies*. Every queued and running request then ends with
``finish_reason="error"``, new requests are refused, and ``on_death`` tells the engine, so the
server reports it and exits for its supervisor to restart it, instead of queueing for ever.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import os
import threading
import time
from array import array
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import Busy, EngineError, ModelError
from .chunking import PrefillChunk
from .context import LlamaModel
from .cores import CoreShare, lent_cpu, process_cpus
from .kv_cache import StateCache, common_prefix_len
from .lookup import DraftSize, find_draft
from .loops import StreamGuard
from .types import Generation, GenerationResult, SamplingParams, Timings, Usage
from .utf8 import TextStream

log = logging.getLogger(__name__)

IDLE, PREFILL, DECODE = 0, 1, 2
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: Slots holding fewer tokens than this are not worth saving to the RAM cache.
MIN_SAVE_TOKENS = 16
#: ``llama_decode``'s return code when its abort callback stopped it.
ABORTED = 2


@dataclass
class Job:
    """A request waiting for (or running in) a slot."""

    gen: Generation
    tokens: list[int]
    sampling: SamplingParams
    max_tokens: int
    priority: int
    order: int
    key: bytes = b""

    def __post_init__(self) -> None:
        self.key = array("i", self.tokens).tobytes()

    def __lt__(self, other: "Job") -> bool:  # heap order: higher priority, then FIFO
        return (-self.priority, self.order) < (-other.priority, other.order)


@dataclass
class Slot:
    """One llama.cpp sequence. ``tokens`` are exactly the tokens its KV cache holds."""

    id: int
    tokens: list[int] = field(default_factory=list)
    job: Optional[Job] = None
    state: int = IDLE
    last_used: float = 0.0
    # per-job
    sampler: int = 0
    stream: Optional[TextStream] = None
    guard: Optional[StreamGuard] = None
    chars_sent: int = 0
    next_token: int = -1
    i_batch: int = -1
    n_chunk: int = 0
    n_gen: int = 0
    cached: int = 0
    evaluated: int = 0
    t_admit: float = 0.0
    t_first_token: float = 0.0
    t_first_emit: float = 0.0
    #: prompt lookup: this step's draft tokens and their batch indices; None: no drafting
    drafts: list[int] = field(default_factory=list)
    draft_idx: list[int] = field(default_factory=list)
    draft_size: Optional[DraftSize] = None

    def key(self) -> bytes:
        return array("i", self.tokens).tobytes()


def _decoded(s: Slot) -> bool:
    """Whether the slot's KV holds a token it generated (its prompt's cells are all placed)."""
    return s.job is not None and len(s.tokens) > len(s.job.tokens)


@dataclass
class Counters:
    requests_total: int = 0
    requests_rejected_total: int = 0
    tokens_generated_total: int = 0
    prompt_tokens_evaluated_total: int = 0
    prompt_tokens_cached_total: int = 0
    decode_steps_total: int = 0
    batch_tokens_total: int = 0
    batch_tokens_last: int = 0
    batch_tokens_max: int = 0
    kv_cache_saves_total: int = 0
    kv_slot_reuse_total: int = 0
    kv_seq_copy_total: int = 0
    kv_idle_parked_total: int = 0
    prefill_steps_aborted_total: int = 0
    draft_tokens_total: int = 0
    draft_accepted_total: int = 0
    finish: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "cancelled": 0, "error": 0, "repetition": 0})
    #: tokens per llama_decode, counted into BATCH_BUCKETS (upper bounds; last one is +Inf)
    batch_hist: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BUCKETS) + 1))

    def batch_buckets(self) -> dict[str, int]:
        """Cumulative Prometheus-style buckets ``{"1": n, "2": n, ..., "+Inf": n}``."""
        out, acc = {}, 0
        for bound, n in zip([*map(str, BATCH_BUCKETS), "+Inf"], self.batch_hist):
            acc += n
            out[bound] = acc
        return out


class Scheduler:
    """Owns the slots, the waiting queue and the decode loop thread."""

    def __init__(
        self, model: LlamaModel, *, n_slots: int, queue_size: int, n_ctx: int, cache_bytes: int, default_seed: Optional[int],
        cores: Optional[CoreShare] = None,
        draft_max: int = 0,
        park_after: float = 0.0,
        batch: Optional[int] = None,
        prefill_chunk: int = 0,
        prefill_step_ratio: float = 8.0,
    ):
        self.model = model
        #: Most tokens drafted by prompt lookup per slot and step (0: no drafting).
        self.draft_max = draft_max
        #: Seconds a slot may sit idle while others work before it is parked (0: never).
        self.park_after = park_after
        #: Decode threads for each step: fewer while a core is lent to speech work (see cores.py).
        self.cores = cores or CoreShare(model.threads, model.threads)
        #: The thread count llama.cpp's context holds (read by stats from other threads).
        self.decode_threads = model.threads
        self._cpus = process_cpus()
        self.n_ctx = n_ctx
        self.queue_size = queue_size
        self.default_seed = default_seed
        self.slots = [Slot(i) for i in range(n_slots)]
        self.cache = StateCache(cache_bytes)
        self.counters = Counters()
        #: Most tokens in a step while some slot decodes; a step of prompt tokens alone may take the
        #: context's whole batch (``model.n_batch``).
        self.n_batch = min(batch or model.n_batch, model.n_batch)
        # Until the step times are known, a mixed step carries half a batch of prompt tokens.
        self.chunk = PrefillChunk(self.n_batch, ratio=prefill_step_ratio, pinned=prefill_chunk,
                                  initial=max(8, self.n_batch // 2))
        #: Times each llama_decode for the chunk's fit (a test may give it a simulated machine).
        self.step_clock: Callable[[], float] = time.perf_counter
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        #: The request whose tokens alone fill the running step: cancelling it aborts the step
        #: (``AbortFlag``) instead of waiting for up to a --prefill-batch of tokens.
        self._abortable: Optional[Generation] = None
        self._abort_lock = threading.Lock()
        self._pending: list[Job] = []
        self._order = itertools.count()
        self._n_assigned = 0  # slots holding a job (guarded by _lock)
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        #: Why the loop died (None while it runs); see the module docstring.
        self.failure: Optional[str] = None
        #: Called once, from this thread, with :attr:`failure` when the loop dies.
        self.on_death: Optional[Callable[[str], None]] = None
        self._calls: list[tuple[Callable[[], Any], Future[Any]]] = []

    # ---- event-loop side --------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop thread and wait (blocking) until its warm-up decode is done; raise
        :class:`ModelError` when the warm-up failed."""
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xiaoq-scheduler", daemon=True)
        self._thread.start()
        self._started.wait()
        if self.failure is not None:
            raise ModelError(self.failure)

    def enqueue(self, gen: Generation, tokens: list[int], sampling: SamplingParams, max_tokens: int, priority: int) -> None:
        """Queue a job or raise :class:`Busy` (every slot taken and the waiting room full), or
        :class:`EngineError` once the loop has died."""
        with self._lock:
            if self.failure is not None:
                raise EngineError(f"The engine has stopped: {self.failure}")
            if self._stopping:
                raise Busy("XiaoQ is shutting down.")
            if self._n_assigned + len(self._pending) >= len(self.slots) + self.queue_size:
                self.counters.requests_rejected_total += 1
                raise Busy()
            heapq.heappush(self._pending, Job(gen, tokens, sampling, max_tokens, priority, next(self._order)))
            self.counters.requests_total += 1
            self._cv.notify()

    def call(self, fn: Callable[[], Any]) -> "Future[Any]":
        """Run ``fn`` on this thread between two steps (other llama.cpp work, e.g. an embedding
        model, shares the one OpenMP team); its result or exception arrives in the future."""
        future: Future[Any] = Future()
        with self._lock:
            if self._stopping or self.failure is not None:
                raise Busy("XiaoQ is shutting down.")
            self._calls.append((fn, future))
            self._cv.notify()
        return future

    def _run_calls(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for fn, future in calls:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def slots_active(self) -> int:
        return self._n_assigned

    # ---- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        # Every llama_decode of this process runs on THIS thread, warm-up included. llama.cpp's CPU
        # backend runs an OpenMP team per calling thread; a second team (e.g. a warm-up on the
        # loader thread) makes libgomp see more threads than cores and stop spin-waiting at its
        # barriers, which cost ~25% of decode speed on a 2-core machine.
        try:
            self.model.warmup()
        except BaseException as e:
            self._die(f"warm-up failed: {type(e).__name__}: {e}")
            return
        finally:
            self._started.set()
        try:
            while self._once():
                pass
        except BaseException as e:
            log.exception("the engine loop failed")
            self._die(f"engine loop failed: {type(e).__name__}: {e}")
            return
        self._shutdown()

    def _once(self) -> bool:
        """One round: admit what fits, purge cancelled waiters, run one step. False when stopping."""
        jobs: list[Job] = []
        with self._lock:
            if self._stopping:
                return False
            if self._n_assigned == 0 and not self._pending and not self._calls:
                self._cv.wait(0.5)
                return True
            cancelled = self._purge_cancelled_locked()
            free = len(self.slots) - self._n_assigned
            while free > 0 and self._pending:
                jobs.append(heapq.heappop(self._pending))
                free -= 1
            self._n_assigned += len(jobs)
        self._run_calls()
        for job in cancelled:
            self._finish_unstarted(job, "cancelled")
        for job in jobs:
            try:
                self._admit(job)
            except Exception as e:  # this request's KV setup failed: it alone fails
                log.exception("admitting a request failed")
                with self._lock:
                    self._n_assigned -= 1
                self._finish_unstarted(job, "error", error=f"engine error: {e}")
        self._park_idle()
        self._step()
        return True

    def _die(self, message: str) -> None:
        """The loop cannot go on: fail every request, refuse new ones, tell the engine."""
        log.error("the engine stopped: %s", message)
        with self._lock:
            self.failure = message
            pending, self._pending = self._pending, []
        error = f"The engine has stopped: {message}"
        for job in pending:
            self._finish_unstarted(job, "error", error=error)
        for s in self.slots:
            if s.job is not None:
                job, s.job = s.job, None
                self._finish_unstarted(job, "error", error=error)
        if self.on_death is not None:
            self.on_death(message)

    def _purge_cancelled_locked(self) -> list[Job]:
        if not self._pending or not any(j.gen.cancelled for j in self._pending):
            return []
        gone = [j for j in self._pending if j.gen.cancelled]
        self._pending = [j for j in self._pending if not j.gen.cancelled]
        heapq.heapify(self._pending)
        return gone

    def _shutdown(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            calls, self._calls = self._calls, []
        for _, future in calls:
            future.cancel()
        for job in pending:
            self._finish_unstarted(job, "cancelled")
        for s in self.slots:
            if s.job is not None:
                self._finish(s, "cancelled")
        self._persist()

    def _persist(self) -> None:
        """At shutdown, the slots' and the RAM cache's states go to the disk tier (when there is
        one), so conversations resumed after a restart are restored rather than prefilled."""
        if self.cache.spill is None:
            return
        for s in self.slots:
            if len(s.tokens) >= MIN_SAVE_TOKENS:
                self._save(s)
        n = self.cache.spill_all()
        log.info("KV states handed to the disk tier at shutdown: %d", n)

    # ---- admission: pick a slot and reuse as much KV as possible ----------------------------
    def _admit(self, job: Job) -> None:
        job.gen.on_cancel(lambda: self._abort_if_running(job.gen))
        now = time.perf_counter()
        free = [s for s in self.slots if s.job is None]
        # An empty slot or the least recently used one is the natural target for unrelated prompts.
        free.sort(key=lambda s: (len(s.tokens) > 0, s.last_used))
        target, n_free = free[0], 0
        for s in free:
            n = common_prefix_len(s.key(), job.key) if s.tokens else 0
            if n > n_free:
                target, n_free = s, n
        n_busy, src_busy = 0, None
        for s in self.slots:
            if s.job is not None and s.tokens:
                n = common_prefix_len(s.key(), job.key)
                if n > n_busy:
                    n_busy, src_busy = n, s
        entry, n_cache = (None, 0)
        if self.cache.enabled and len(self.cache):
            entry, n_cache = self.cache.lookup(job.key)

        best = max(n_free, n_busy, n_cache)
        if best > 0 and n_free == best:
            source = "slot"
        elif best > 0 and n_busy == best:
            source = "copy"
            # another free slot's tokens are lost below, so use the least valuable one
            target = free[0]
        elif best > 0:
            source = "cache"
            target = free[0]
        else:
            source = "none"
            target = free[0]

        keep = n_free if source == "slot" else 0
        if len(target.tokens) - keep >= MIN_SAVE_TOKENS:
            self._save(target)

        if source == "slot":
            self.counters.kv_slot_reuse_total += 1
            self._trim(target, n_free)
        elif source == "copy":
            assert src_busy is not None
            self.model.seq_rm(target.id)
            self.model.seq_cp(src_busy.id, target.id, 0, n_busy)
            target.tokens = job.tokens[:n_busy]
            self.counters.kv_seq_copy_total += 1
        elif source == "cache":
            assert entry is not None
            if self.model.state_set(target.id, entry.data):
                target.tokens = list(array("i", entry.key))
                self._trim(target, n_cache)
            else:
                log.warning("restoring a cached KV state failed; prefilling instead")
                self._reset_slot(target)
                entry = None
        else:
            self._reset_slot(target)
        if self.cache.enabled:
            self.cache.record(entry if source == "cache" else None)

        # Sampling needs the logits of the prompt's last token: always evaluate at least that one.
        if len(target.tokens) >= len(job.tokens):
            self._trim(target, len(job.tokens) - 1)

        stream = TextStream(job.sampling.stop)
        target.sampler = self.model.make_sampler(job.sampling, self.default_seed, job.tokens)
        target.stream = stream
        target.guard = StreamGuard(self.model.token_bytes) if job.sampling.loop_guard else None
        target.chars_sent = 0
        target.state = PREFILL
        target.cached = len(target.tokens)
        target.evaluated = 0
        target.n_gen = 0
        target.next_token = -1
        target.i_batch = -1
        target.drafts, target.draft_idx = [], []
        greedy = job.sampling.temperature <= 0.0
        target.draft_size = DraftSize(self.draft_max) if self.draft_max > 0 and greedy else None
        target.t_admit = now
        target.t_first_token = target.t_first_emit = 0.0
        target.job = job
        self.counters.prompt_tokens_cached_total += target.cached

    def _trim(self, s: Slot, n: int) -> None:
        if len(s.tokens) > n:
            if not self.model.seq_rm(s.id, n, -1):
                self._reset_slot(s)
                return
            del s.tokens[n:]

    def _reset_slot(self, s: Slot) -> None:
        self.model.seq_rm(s.id)
        s.tokens = []

    def _save(self, s: Slot) -> bool:
        """Copy a slot's KV state to the RAM cache before its tokens are overwritten; True when
        the cache holds it afterwards."""
        if not self.cache.enabled:
            return False
        key = s.key()
        if self.cache.contains_prefix_of_or_equal(key):
            return True
        data = self.model.state_get(s.id)
        if data is not None and self.cache.put(key, data):
            self.counters.kv_cache_saves_total += 1
            return True
        return False

    # ---- parking idle slots (see the module docstring) ----------------------------------------
    def _park_idle(self) -> None:
        if self.park_after <= 0 or not self.cache.enabled:
            return
        active = [s for s in self.slots if s.job is not None]
        if not active or (self.model.deterministic and not all(_decoded(s) for s in active)):
            return
        now = time.perf_counter()
        idle = [s for s in self.slots if s.job is None and s.tokens and now - s.last_used >= self.park_after]
        if sum(self._park(s) for s in idle):
            for s in active:
                self._move_down(s)

    def _park(self, s: Slot) -> bool:
        """Free an idle slot's cells once the cache holds its state (a few tokens are not worth
        saving); False when the cache cannot take it, so the slot keeps it."""
        if len(s.tokens) >= MIN_SAVE_TOKENS and not self._save(s):
            return False
        self._reset_slot(s)
        self.counters.kv_idle_parked_total += 1
        return True

    def _move_down(self, s: Slot) -> None:
        """Copy a working slot's state out and back in: llama.cpp puts it into free cells from its
        search head, which freeing lowered to the lowest freed cell, in the same order."""
        if not s.tokens:
            return
        data = self.model.state_get(s.id)
        if data is not None and self.model.state_set(s.id, data):
            return
        log.error("moving slot %d's KV state failed", s.id)
        self._reset_slot(s)
        self._finish(s, "error", error="could not move the KV state of this request")

    # ---- one step ---------------------------------------------------------------------------
    def _step(self) -> None:
        for s in self.slots:
            if s.job is not None and s.job.gen.cancelled:
                self._finish(s, "cancelled")
        active = [s for s in self.slots if s.job is not None]
        if not active:
            return
        batch = self.model.batch
        assert batch is not None
        batch.clear()
        n_decode = 0
        for s in active:
            if s.state == DECODE:
                s.i_batch = batch.add(s.next_token, len(s.tokens), s.id, True)
                n_decode += 1
        for s in active:
            if s.state == DECODE and s.draft_size is not None:
                self._add_draft(s)
        if n_decode:
            budget = min(self.n_batch - batch.n, self.chunk.shared(n_decode))
        else:
            budget = self.model.n_batch - batch.n
        prefilling = sorted((s for s in active if s.state == PREFILL), key=lambda s: s.job.order)  # type: ignore[union-attr]
        for s in prefilling:
            s.n_chunk = 0
            s.i_batch = -1
            if budget <= 0:
                continue
            assert s.job is not None
            p0 = len(s.tokens)
            take = min(budget, len(s.job.tokens) - p0)
            last = p0 + take == len(s.job.tokens)
            idx = batch.add_run(s.job.tokens[p0 : p0 + take], p0, s.id, last)
            s.n_chunk = take
            if last:
                s.i_batch = idx
            budget -= take

        if self.model.deterministic:
            self.model.pad_for_invariance()
        self._apply_threads()
        t0 = self.step_clock()
        alone = active[0].job if len(active) == 1 and active[0].state == PREFILL else None
        rc = self._decode(alone.gen if alone is not None else None)
        if rc == ABORTED:  # its one request was cancelled mid-step
            self.counters.prefill_steps_aborted_total += 1
            for s in active:
                s.n_chunk, s.i_batch = 0, -1
                # llama.cpp drops the aborted ubatch's cells; a step of several ubatches
                # (--deterministic) keeps the ones before it: the slot's cells stay its tokens
                # (it may be saved to the state cache or parked before a next turn trims it)
                if not self.model.seq_rm(s.id, len(s.tokens), -1):
                    self._reset_slot(s)
            return  # the next step's first loop finishes it as cancelled
        if rc == 0:
            self.chunk.observe(batch.n, sum(s.n_chunk for s in prefilling), self.step_clock() - t0)
        c = self.counters
        c.decode_steps_total += 1
        c.batch_tokens_last = batch.n
        c.batch_tokens_total += batch.n
        if batch.n > c.batch_tokens_max:
            c.batch_tokens_max = batch.n
        c.batch_hist[bisect.bisect_left(BATCH_BUCKETS, batch.n)] += 1
        if rc != 0:
            for s in active:
                s.drafts, s.draft_idx = [], []
                if s.job is not None and (s.state == DECODE or s.n_chunk):
                    self._finish(s, "error", error=f"llama_decode failed ({rc})")
                    self._reset_slot(s)
            return

        sample, on_token = self.model.sample, self._on_token
        for s in active:
            if s.state == DECODE and s.drafts:
                self._check_draft(s)  # samples and emits this slot's tokens itself
                continue
            if s.state == DECODE:
                s.tokens.append(s.next_token)
            elif s.n_chunk:
                p0 = len(s.tokens)
                s.tokens.extend(s.job.tokens[p0 : p0 + s.n_chunk])  # type: ignore[union-attr]
                s.evaluated += s.n_chunk
                c.prompt_tokens_evaluated_total += s.n_chunk
            if s.i_batch >= 0:
                on_token(s, sample(s.sampler, s.i_batch))

    def _apply_threads(self) -> None:
        n = self.cores.threads
        if n != self.decode_threads:
            self.model.set_threads(n)
            self.decode_threads = self.model.threads
            self._keep_off_lent_cpu(n < self.cores.base)

    def _keep_off_lent_cpu(self, lent: bool) -> None:
        """While a core is lent, this thread (the whole OpenMP team when it decodes alone) stays off
        the CPU the speech thread is pinned to, so neither waits for the other."""
        cpus = self._cpus
        if len(cpus) < 2 or not hasattr(os, "sched_setaffinity"):
            return
        try:
            os.sched_setaffinity(0, cpus - {lent_cpu(cpus)} if lent else cpus)
        except OSError:  # not permitted: the OS places it
            pass

    def _decode(self, gen: Optional[Generation]) -> int:
        """``llama_decode`` of the built batch; ``gen``: the one request whose prompt fills it,
        whose cancelling meanwhile aborts the step (a 512-token prefill step is ~2.5 s on 2 cores)."""
        flag = self.model.abort
        with self._abort_lock:
            self._abortable = gen
            flag.lower()
            if gen is not None and gen.cancelled:
                flag.raise_()
        try:
            return self.model.decode()
        finally:
            with self._abort_lock:
                self._abortable = None
                flag.lower()

    def _abort_if_running(self, gen: Generation) -> None:
        """A cancel hook (any thread): abort the running step if it is this request's alone."""
        with self._abort_lock:
            if self._abortable is gen:
                self.model.abort.raise_()

    def _add_draft(self, s: Slot) -> None:
        """Append this slot's prompt-lookup draft after its next token (rows the batch has room for,
        never past the reply's max_tokens)."""
        assert s.job is not None and s.draft_size is not None and self.model.batch is not None
        batch = self.model.batch
        limit = min(s.job.max_tokens - s.n_gen - 1, self.n_batch - batch.n)
        room = min(s.draft_size.n, limit)
        if room <= 0 or not s.draft_size.ready():
            return
        draft = find_draft(s.tokens + [s.next_token], room, n_long=min(self.draft_max, limit))
        p0 = len(s.tokens) + 1
        s.drafts = draft
        s.draft_idx = [batch.add(t, p0 + j, s.id, True) for j, t in enumerate(draft)]

    def _check_draft(self, s: Slot) -> None:
        """Keep the longest draft prefix the model agrees with, emit it and the model's next token,
        and drop the rejected draft tokens from the KV cache."""
        drafts, idx = s.drafts, s.draft_idx
        s.drafts, s.draft_idx = [], []
        toks = [self.model.sample(s.sampler, s.i_batch)]
        while len(toks) <= len(drafts) and toks[-1] == drafts[len(toks) - 1]:
            toks.append(self.model.sample(s.sampler, idx[len(toks) - 1]))
        accepted = len(toks) - 1
        s.tokens.append(s.next_token)
        s.tokens.extend(drafts[:accepted])
        if accepted < len(drafts) and not self.model.seq_rm(s.id, len(s.tokens), -1):
            self._finish(s, "error", error="could not drop rejected draft tokens from the KV cache")
            self._reset_slot(s)
            return
        assert s.draft_size is not None
        s.draft_size.update(len(drafts), accepted)
        self.counters.draft_tokens_total += len(drafts)
        self.counters.draft_accepted_total += accepted
        for tok in toks:
            self._on_token(s, tok)
            if s.job is None:
                return

    def _on_token(self, s: Slot, tok: int) -> None:
        now = time.perf_counter()
        job = s.job
        assert job is not None and s.stream is not None
        if s.state == PREFILL:
            s.state = DECODE
            s.t_first_token = now
        if self.model.is_eog(tok):
            self._finish(s, "stop")
            return
        s.n_gen += 1
        self.counters.tokens_generated_total += 1
        text = s.stream.feed(self.model.token_bytes(tok))
        if text:
            if not s.t_first_emit:
                s.t_first_emit = now
            job.gen.emit(text)
            s.chars_sent += len(text)
        keep = s.guard.push(tok, s.chars_sent) if s.guard is not None else None
        if keep is not None:
            self._finish(s, "repetition", text_length=keep)
        elif s.stream.stopped:
            self._finish(s, "stop")
        elif s.n_gen >= job.max_tokens:
            self._finish(s, "length")
        else:
            s.next_token = tok

    def _finish(self, s: Slot, reason: str, error: Optional[str] = None, text_length: Optional[int] = None) -> None:
        job = s.job
        assert job is not None
        now = time.perf_counter()
        if reason in ("stop", "length") and s.stream is not None:
            rest = s.stream.flush()
            if rest:
                if not s.t_first_emit:
                    s.t_first_emit = now
                job.gen.emit(rest)
        if s.sampler:
            self.model.free_sampler(s.sampler)
            s.sampler = 0
        t_first = s.t_first_token or now
        timings = Timings(
            queue_ms=(s.t_admit - job.gen.created) * 1000.0,
            ttft_ms=((s.t_first_emit or t_first) - job.gen.created) * 1000.0,
            prompt_ms=(t_first - s.t_admit) * 1000.0,
            decode_ms=(now - t_first) * 1000.0,
            prompt_tokens_evaluated=s.evaluated,
        )
        usage = Usage(prompt_tokens=len(job.tokens), completion_tokens=s.n_gen, cached_tokens=s.cached)
        self.counters.finish[reason] = self.counters.finish.get(reason, 0) + 1
        s.job = None
        s.state = IDLE
        s.stream = None
        s.guard = None
        s.last_used = now
        with self._lock:
            self._n_assigned -= 1
        job.gen.finish(GenerationResult(reason, usage, timings, error, text_length=text_length))

    def _finish_unstarted(self, job: Job, reason: str, error: Optional[str] = None) -> None:
        waited = (time.perf_counter() - job.gen.created) * 1000.0
        self.counters.finish[reason] = self.counters.finish.get(reason, 0) + 1
        job.gen.finish(
            GenerationResult(reason, Usage(prompt_tokens=len(job.tokens)), Timings(queue_ms=waited), error)  # type: ignore[arg-type]
        )
