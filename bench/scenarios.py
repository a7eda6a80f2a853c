"""The benchmark scenarios, each one async function run against one server ("side") at a time.

A scenario returns plain JSON-able numbers for one repetition; ``bench/report.py`` turns the
repetitions of both sides into medians and ratios. Every loop is bounded by a count from
``Workload`` and every request by the client's timeouts, and a failed request is recorded in
``errors`` rather than raised, so one hiccup costs one figure, not the run.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Optional

import httpx

from bench import workload as W
from bench.client import StreamResult, chat_body, stream_chat
from bench.stats import gaps, mean, median, percentile


@dataclass
class Side:
    """One server under test, as the scenarios see it."""

    name: str
    base_url: str
    #: Extra request fields that make replies run to max_tokens (see ``find_length_control``).
    length_control: dict[str, Any] = field(default_factory=dict)
    #: What the probe found this server supports (before any common-denominator downgrade).
    supports: str = "none"
    client: Optional[httpx.AsyncClient] = None
    #: Scenario keys this side runs (None: every one).
    only: Optional[frozenset[str]] = None

    async def chat(self, messages: list[dict[str, str]], max_tokens: int, *, seed: int = 1234,
                   on_chunk: Optional[Callable[[StreamResult], None]] = None) -> StreamResult:
        assert self.client is not None, "Side.client is set by the runner"
        body = chat_body(messages, max_tokens, extra=self.length_control, seed=seed)
        return await stream_chat(self.client, self.base_url, body, on_chunk=on_chunk)


@dataclass
class Workload:
    """Sizes of every scenario; ``quick()`` shrinks them for a smoke run."""

    decode_tokens: int = 256
    ttft_probes: int = 3
    turns: int = 12
    turn_tokens: int = 64
    users: int = 3
    user_turns: int = 6
    user_doc_words: int = 400
    user_tokens: int = 32
    streams: tuple[int, ...] = (1, 2, 4, 8)
    stream_tokens: int = 128
    long_prompt_words: int = 1290  # about 1,500 prompt tokens with the template and the question
    background_tokens: int = 256
    background_head_start: int = 16  # tokens the running stream produces before the long prompt
    disk_users: int = 12  # scenario 7: more conversations than a 64 MB RAM cache holds
    disk_doc_words: int = 800  # about 1,000 tokens of distinct prefix per user
    disk_turns: int = 3
    quote_tokens: int = 128  # scenario 8: reply length of the quoting and the ordinary requests
    restart_doc_words: int = 800  # scenario 10: about 1,000 tokens in the conversation resumed after a restart
    fill_slots: int = 8  # scenario 11: slots filled at once (the servers run with this many)
    fill_words: int = 3600  # scenario 11: ~3,900 prompt tokens each, 95% of a 4096-token slot

    @classmethod
    def quick(cls) -> "Workload":
        return cls(decode_tokens=64, ttft_probes=1, turns=4, turn_tokens=16, user_turns=2,
                   user_doc_words=200, user_tokens=8, stream_tokens=32, long_prompt_words=600,
                   background_tokens=128, background_head_start=8, disk_doc_words=300, disk_turns=2,
                   quote_tokens=48, restart_doc_words=300, fill_words=300)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _err(res: StreamResult, what: str) -> Optional[str]:
    return None if res.ok else f"{what}: {res.error or 'no token received'}"


async def runs_to_length(side: Side, control: dict[str, Any]) -> bool:
    """Whether ``control`` makes a one-word answer still run to max_tokens on this server."""
    probe = Side(side.name, side.base_url, length_control=control, client=side.client)
    res = await probe.chat(W.short_messages("probe", "Reply with the single word: OK"), 24)
    return res.ok and res.n_tokens >= 24 and res.finish_reason == "length"


async def find_length_control(side: Side, eog_ids: Optional[Callable[[], list[int]]] = None) -> dict[str, Any]:
    """The first way this server accepts to ignore end-of-generation, or {} if none works.

    ``ignore_eos`` (llama-server's option) first, then the standard OpenAI ``logit_bias`` pushing
    every end-of-generation token to -100. With neither, replies end where the model ends them and
    the tables show the real token counts.
    """
    if await runs_to_length(side, {"ignore_eos": True}):
        return {"ignore_eos": True}
    ids = eog_ids() if eog_ids else []  # lazily: reading the vocabulary takes a few seconds
    if ids:
        control = {"logit_bias": {str(t): -100 for t in ids}}
        if await runs_to_length(side, control):
            return control
    return {}


def length_control_name(control: dict[str, Any]) -> str:
    """How a side was made to run replies to max_tokens, for the report."""
    return next(iter(control), "none")


async def warm_up(side: Side) -> None:
    """One request so weights are paged in and lazy allocations are done before measuring."""
    await side.chat(W.short_messages("warmup"), 16)


async def single_stream(side: Side, wl: Workload, tag: str) -> dict[str, Any]:
    """Scenario 1: TTFT of a short prompt (a few probes) and decode tokens/s over a long answer."""
    errors: list[str] = []
    ttfts = []
    prompt_tokens = None
    for i in range(wl.ttft_probes):
        res = await side.chat(W.short_messages(f"{tag}-p{i}"), 8)
        if e := _err(res, f"ttft probe {i}"):
            errors.append(e)
        ttfts.append(res.ttft)
        prompt_tokens = res.prompt_tokens or prompt_tokens
    res = await side.chat(W.short_messages(f"{tag}-d", W.LONG_QUESTION), wl.decode_tokens)
    if e := _err(res, "decode"):
        errors.append(e)
    # Prefill speed alone: the long prompt of scenario 5 with nothing else running.
    pre = await side.chat(W.long_prompt_messages(f"{tag}-pf", wl.long_prompt_words, seed=7), 1)
    if e := _err(pre, "prefill"):
        errors.append(e)
    prefill_tps = (pre.prompt_evaluated / pre.ttft) if pre.ok and pre.prompt_evaluated and pre.ttft else None
    return {"ttft": median(ttfts), "ttft_probes": ttfts, "prompt_tokens": prompt_tokens,
            "decode_tps": res.decode_tps, "decode_tokens": res.n_tokens if res.ok else None,
            "decode_finish": res.finish_reason, "prefill_tps": prefill_tps, "prefill_tokens": pre.prompt_evaluated,
            "errors": errors}


async def conversation(side: Side, wl: Workload, tag: str, *, reuse: bool = True) -> dict[str, Any]:
    """Scenario 2: one user, ``wl.turns`` turns, the client resending the whole history each turn.

    With ``reuse=False`` every turn gets a fresh system-prompt nonce, so no cached prefix can
    match (the "reuse off" baseline of bench/conversation_reuse.py).
    """
    history: list[dict[str, str]] = []
    out: dict[str, list] = {"ttft": [], "prompt_tokens": [], "cached_tokens": [], "evaluated": [],
                            "completion_tokens": []}
    errors: list[str] = []
    for turn in range(wl.turns):
        question = W.CONVERSATION_TURNS[turn % len(W.CONVERSATION_TURNS)]
        history.append({"role": "user", "content": question})
        system = W.system_message(tag if reuse else f"{tag}-t{turn}")
        res = await side.chat([system] + history, wl.turn_tokens)
        if e := _err(res, f"turn {turn + 1}"):
            errors.append(e)
            break
        history.append({"role": "assistant", "content": res.text})
        out["ttft"].append(res.ttft)
        out["prompt_tokens"].append(res.prompt_tokens)
        out["cached_tokens"].append(res.cached_tokens)
        out["evaluated"].append(res.prompt_evaluated)
        out["completion_tokens"].append(res.n_tokens)
    return {**out, "mean_ttft": mean(out["ttft"]), "errors": errors}


async def alternating_users(side: Side, wl: Workload, tag: str, *, users: Optional[int] = None) -> dict[str, Any]:
    """Scenario 3: users take turns, each in their own conversation that opens with a document.

    User 1 asks, then user 2, then user 3, then user 1 again... so a server that keeps only the
    last prompt's KV re-reads a whole conversation on every request.
    """
    n_users = users or wl.users
    histories: list[list[dict[str, str]]] = [[] for _ in range(n_users)]
    systems = [W.system_message(f"{tag}-u{u}") for u in range(n_users)]
    followups = [W.user_followups(u) for u in range(n_users)]
    ttft_first: list[Optional[float]] = []
    ttft_later: list[Optional[float]] = []
    evaluated: list[Optional[int]] = []
    errors: list[str] = []
    for turn in range(wl.user_turns):
        for u in range(n_users):
            if turn == 0:
                question = W.document_question(f"{tag}-u{u}", wl.user_doc_words, seed=u)
            else:
                question = followups[u][(turn - 1) % len(followups[u])]
            histories[u].append({"role": "user", "content": question})
            res = await side.chat([systems[u]] + histories[u], wl.user_tokens)
            if e := _err(res, f"user {u + 1} turn {turn + 1}"):
                errors.append(e)
                histories[u].pop()
                continue
            histories[u].append({"role": "assistant", "content": res.text})
            (ttft_first if turn == 0 else ttft_later).append(res.ttft)
            evaluated.append(res.prompt_evaluated)
    every = ttft_first + ttft_later
    return {"mean_ttft": mean(every), "p95_ttft": percentile(every, 95),
            "mean_ttft_later": mean(ttft_later), "p95_ttft_later": percentile(ttft_later, 95),
            "ttft_first": ttft_first, "ttft_later": ttft_later, "evaluated": evaluated, "errors": errors}


async def disk_tier(side: Side, wl: Workload, tag: str) -> dict[str, Any]:
    """Scenario 7: scenario 3 with more users, each with a longer document, than the servers' RAM
    caches hold (the runner starts both with 64 MB): turns 2+ find their state on XiaoQ's disk
    tier, or re-read the history where there is none."""
    big = replace(wl, user_doc_words=wl.disk_doc_words, user_turns=wl.disk_turns)
    return await alternating_users(side, big, tag, users=wl.disk_users)


async def quoting(side: Side, wl: Workload, tag: str) -> dict[str, Any]:
    """Scenario 8: decode tokens/s of answers that copy from their prompt (a bug fix rewriting the
    function, a quoted passage) and of an ordinary answer, one request at a time."""
    errors: list[str] = []
    quote: list[Optional[float]] = []
    for kind in (0, 1):
        res = await side.chat(W.quoting_messages(f"{tag}-q{kind}", kind), wl.quote_tokens)
        if e := _err(res, f"quoting request {kind}"):
            errors.append(e)
        quote.append(res.decode_tps)
    chat = await side.chat(W.short_messages(f"{tag}-c", W.LONG_QUESTION), wl.quote_tokens)
    if e := _err(chat, "ordinary request"):
        errors.append(e)
    return {"quote_tps": median(quote), "quote_tps_each": quote, "chat_tps": chat.decode_tps, "errors": errors}


async def concurrent_streams(side: Side, wl: Workload, tag: str) -> dict[str, Any]:
    """Scenario 4: 1, 2, 4... streams started together; aggregate throughput and latency spread."""
    out: dict[str, Any] = {"errors": []}
    for n in wl.streams:
        msgs = [W.short_messages(f"{tag}-n{n}-s{i}", W.LONG_QUESTION) for i in range(n)]
        results = await asyncio.gather(*(side.chat(m, wl.stream_tokens) for m in msgs))
        ok = [r for r in results if r.ok]
        out["errors"] += [e for i, r in enumerate(results) if (e := _err(r, f"{n} streams, stream {i}"))]
        if not ok:
            out[str(n)] = None
            continue
        t0 = min(r.t_send for r in results)
        t1 = max(r.t_end or r.t_send for r in results)
        tokens = sum(r.n_tokens for r in ok)
        out[str(n)] = {"aggregate_tps": tokens / (t1 - t0) if t1 > t0 else None, "tokens": tokens,
                       "ttft": [r.ttft for r in ok], "gaps": [g for r in ok for g in r.token_gaps],
                       "p95_gap": percentile([g for r in ok for g in r.token_gaps], 95)}
    return out


async def prefill_interference(side: Side, wl: Workload, tag: str) -> dict[str, Any]:
    """Scenario 5: a long prompt arrives while another stream decodes; how long does that stream stall?

    The running stream's longest gap between tokens after the long prompt was sent is the pause
    its user sees. Its longest gap before that is reported too, as the no-interference baseline.
    """
    errors: list[str] = []
    under_way = asyncio.Event()

    def watch(partial: StreamResult) -> None:
        if len(partial.chunk_times) >= wl.background_head_start:
            under_way.set()

    bg_task = asyncio.create_task(side.chat(W.short_messages(f"{tag}-bg", W.LONG_QUESTION),
                                            wl.background_tokens, on_chunk=watch))
    waiter = asyncio.create_task(under_way.wait())
    await asyncio.wait({bg_task, waiter}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    long_res = await side.chat(W.long_prompt_messages(f"{tag}-long", wl.long_prompt_words, seed=99), 8)
    bg = await asyncio.wait_for(bg_task, timeout=300)
    if e := _err(bg, "running stream"):
        errors.append(e)
    if e := _err(long_res, "long prompt"):
        errors.append(e)
    return _pause_figures(bg, long_res, errors)


def _pause_figures(bg: StreamResult, long_res: StreamResult, errors: list[str]) -> dict[str, Any]:
    t_long = long_res.t_send
    before = [t for t in bg.chunk_times if t < t_long]
    after = [t for t in bg.chunk_times if t >= t_long]
    # The gap that spans the moment the long prompt was sent counts as "after".
    span = ([before[-1]] if before else []) + after
    pause = max(gaps(span)) if len(span) >= 2 else None
    overlapped = bool(after) and long_res.t_first is not None and bg.chunk_times[-1] >= long_res.t_first
    return {"max_pause": pause, "baseline_max_gap": max(gaps(before)) if len(before) >= 2 else None,
            "median_gap": median(gaps(bg.chunk_times)), "long_ttft": long_res.ttft,
            "long_prompt_tokens": long_res.prompt_tokens, "tokens_before": len(before),
            "tokens_after": len(after), "overlapped": overlapped, "errors": errors}
