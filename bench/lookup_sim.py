#!/usr/bin/env python3
"""Prompt-lookup drafting rules compared offline, on the real model's own greedy replies.

    .venv/bin/python bench/lookup_sim.py [--model M] [--tokens 128] [--cache bench/results/lookup.json]

Greedy output is the same with and without drafting, so a rule's speed follows from two things
measured once: the replies (generated here, token ids, without drafting) and what a decode step
of 1 + k rows costs on this machine (timed here, in-process, one sequence ~300 tokens deep).
For each reply and rule the script replays the scheduler's loop (the next token plus the rule's
draft in one step, the longest agreeing prefix kept) and prints tokens/s relative to no drafting.

Rules: XiaoQ's (``engine/lookup.py``: a 5-token match, drafts up to twice its length, sized by
``DraftSize``), the earlier one (newest 4..2-token suffix, 8 tokens), llama.cpp's ``ngram-simple``
(a 12-token match, 48 tokens; its server's ``--spec-type ngram-simple``), and an oracle that drafts
exactly the longest copy that will be accepted (no real rule does better).

Prompts: the bench's two quoting prompts (scenario 8) and its ordinary one, and held-out cases the
rule was not tuned on (a Chinese knowledge-base quote, a code edit, a summary, two chats). Timing:
run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bench import workload as W  # noqa: E402
from bench.run import resolve_model  # noqa: E402

ZH_PASSAGE = ("公司差旅报销规定：员工出差乘坐高铁可报销二等座，乘坐飞机可报销经济舱。住宿标准为一线城市每晚不超过五百元，"
              "其他城市每晚不超过三百五十元。餐费补助每天一百元，按出差天数计算。报销须在出差结束后十五个工作日内提交，"
              "并附上发票和行程单。超过期限的报销申请需部门经理签字说明原因。")
FUNCTION = '''def merge_intervals(intervals):
    """Merge overlapping [start, end] intervals and return them sorted."""
    if not intervals:
        return []
    intervals.sort(key=lambda x: x[0])
    merged = [intervals[0]]
    for start, end in intervals[1:]:
        last = merged[-1]
        if start < last[1]:
            last[1] = max(last[1], end)
        else:
            merged.append([start, end])
    return merged
'''


def prompts() -> dict[str, list[dict[str, str]]]:
    sys_en = {"role": "system", "content": "You are a helpful assistant."}
    sys_zh = {"role": "system", "content": "你是一个乐于助人的助手。"}
    return {
        "bench quote: bug fix": W.quoting_messages("sim-q0", 0),
        "bench quote: passage": W.quoting_messages("sim-q1", 1),
        "bench ordinary": W.short_messages("sim-c", W.LONG_QUESTION),
        "held-out: zh KB quote": [sys_zh, {"role": "user", "content": f"资料[1]：{ZH_PASSAGE}\n\n根据资料回答：出差住宿和餐费的标准是什么？请引用原文。"}],
        "held-out: code edit": [sys_en, {"role": "user", "content": "Intervals that only touch (end == start) should merge too. "
                                         f"Fix it and print the whole function:\n\n{FUNCTION}"}],
        "held-out: summary": [sys_en, {"role": "user", "content": f"Text:\n\n{W.filler(220, seed=77)}\n\n"
                                       "Repeat the first three sentences of the text exactly, then summarize it."}],
        "held-out: zh chat": [sys_zh, {"role": "user", "content": "给我讲讲长城的历史，要详细一些。"}],
        "held-out: en chat": [sys_en, {"role": "user", "content": "Explain how a hash table works and when to use one."}],
    }


def chatml(messages: list[dict[str, str]]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def greedy_replies(model, n_tokens: int) -> dict[str, tuple[list[int], list[int]]]:
    from xiaoq.engine.types import SamplingParams

    out = {}
    for name, msgs in prompts().items():
        toks = model.tokenize(chatml(msgs), add_special=False, parse_special=True)
        model.seq_rm(0)
        b = model.batch
        for k in range(0, len(toks), model.n_batch):
            b.clear()
            last = b.add_run(toks[k:k + model.n_batch], k, 0, True)
            assert model.decode() == 0
        sampler = model.make_sampler(SamplingParams(temperature=0.0, ignore_eos=True), 1)
        reply, pos = [], len(toks)
        for _ in range(n_tokens + 64):
            t = model.sample(sampler, last)
            reply.append(t)
            b.clear()
            last = b.add(t, pos, 0, True)
            pos += 1
            assert model.decode() == 0
        model.free_sampler(sampler)
        out[name] = (toks, reply)
    return out


def step_costs(model, rows: Sequence[int], reps: int = 7) -> dict[int, float]:
    """Median ms of one decode step of ``r`` rows (all with logits), ~300 tokens deep."""
    toks = model.tokenize("hello world " * 150, add_special=False, parse_special=False)[:300]
    model.seq_rm(0)
    b = model.batch
    b.clear()
    b.add_run(toks, 0, 0, True)
    assert model.decode() == 0
    times: dict[int, list[float]] = {r: [] for r in rows}
    for _ in range(reps):
        for r in rows:
            b.clear()
            for j in range(r):
                b.add(toks[j], len(toks) + j, 0, True)
            t = time.perf_counter()
            assert model.decode() == 0
            times[r].append((time.perf_counter() - t) * 1000)
            model.seq_rm(0, len(toks), -1)
    return {r: statistics.median(v) for r, v in times.items()}


def interpolate(costs: dict[int, float]) -> Callable[[int], float]:
    ks = sorted(costs)

    def cost(r: int) -> float:
        if r in costs:
            return costs[r]
        for a, b in zip(ks, ks[1:]):
            if a < r < b:
                return costs[a] + (costs[b] - costs[a]) * (r - a) / (b - a)
        return costs[ks[-1]] * r / ks[-1]
    return cost


class Rule:
    def draft(self, history: list[int], room: int) -> list[int]:
        return []

    def update(self, drafted: int, accepted: int) -> None:
        pass


class XiaoQ(Rule):
    """``engine/lookup.py`` as the scheduler calls it; ``long_match`` varies the length from which
    a match drafts the whole ``n_max`` (0: the module's own)."""

    def __init__(self, n_max: int = 48, long_match: int = 0):
        from xiaoq.engine.lookup import LONG_MATCH, DraftSize
        self.size = DraftSize(n_max)
        self.n_max = n_max
        self.long_match = long_match or LONG_MATCH

    def draft(self, history: list[int], room: int) -> list[int]:
        from xiaoq.engine.lookup import find_draft
        if not self.size.ready():
            return []
        return find_draft(history, min(room, self.size.n), n_long=min(room, self.n_max), long_match=self.long_match)

    def update(self, drafted: int, accepted: int) -> None:
        self.size.update(drafted, accepted)


class Earlier(XiaoQ):
    """The rule before this one: the newest occurrence of the last 4, 3 or 2 tokens, 8 tokens."""

    def __init__(self) -> None:
        super().__init__(8)

    def draft(self, history: list[int], room: int) -> list[int]:
        if not self.size.ready():
            return []
        n = min(room, self.size.n)
        for g in (4, 3, 2):
            suffix = history[-g:]
            for j in range(len(history) - g - 1, -1, -1):
                if history[j:j + g] == suffix:
                    return history[j + g:j + g + n]
        return []


class NgramSimple(Rule):
    """llama.cpp's common_ngram_simple_draft with its server defaults (size_n 12, size_m 48)."""

    def draft(self, history: list[int], room: int) -> list[int]:
        n, m = 12, 48
        if len(history) <= n + m + 1:
            return []
        suffix = history[-n:]
        for j in range(len(history) - n - 1, 0, -1):
            if history[j:j + n] == suffix:
                k = min(m, len(history) - (j + n), room)
                return [] if k < n else history[j + n:j + n + k]
        return []


class Oracle(Rule):
    """Drafts the longest run of the true continuation that occurs in the history, cut to the length
    that pays best on this machine's step costs: no lookup rule can beat it."""

    def __init__(self, reply: list[int], prompt_len: int, cost: Callable[[int], float]):
        self.reply, self.prompt_len, self.cost = reply, prompt_len, cost

    def draft(self, history: list[int], room: int) -> list[int]:
        p = len(history) - self.prompt_len - 1
        future = self.reply[p + 1:p + 1 + room]
        text = "," + ",".join(map(str, history)) + ","
        for k in range(len(future), 0, -1):
            if "," + ",".join(map(str, future[:k])) + "," in text:
                best = max(range(k + 1), key=lambda i: (i + 1) / self.cost(i + 1))
                return future[:best]
        return []


def replay(prompt: list[int], reply: list[int], rule: Rule, n_tokens: int, cost: Callable[[int], float]) -> float:
    """Tokens/s of a reply of ``n_tokens`` decoded with ``rule``'s drafts."""
    p, elapsed = 0, 0.0
    while p < n_tokens:
        room = min(n_tokens - p - 1, 64)
        draft = rule.draft(prompt + reply[:p + 1], room) if room > 0 else []
        a = 0
        while a < len(draft) and draft[a] == reply[p + 1 + a]:
            a += 1
        rule.update(len(draft), a)
        elapsed += cost(1 + len(draft))
        p += 1 + a
    return n_tokens / elapsed * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="GGUF file (default: $XIAOQ_BENCH_MODEL, then get-qwen-gguf.sh's file)")
    p.add_argument("--tokens", type=int, default=128, help="reply length (the bench's scenario 8: 128)")
    p.add_argument("--cache", type=Path, help="JSON of step costs and replies: read when it exists (replay only), "
                   "else measured and written (to compare rules again without re-timing)")
    args = p.parse_args()
    if args.cache is not None and args.cache.exists():
        saved = json.loads(args.cache.read_text())
        costs = {int(r): c for r, c in saved["costs"].items()}
        traces = {name: (pr, re) for name, (pr, re) in saved["traces"].items()}
    else:
        from xiaoq.engine.context import LlamaModel

        model = LlamaModel(resolve_model(args.model), n_ctx_per_seq=4096, n_seq=1, n_batch=512, n_threads=2)
        try:
            rows = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64]
            costs = step_costs(model, rows)
            traces = greedy_replies(model, args.tokens)
        finally:
            model.close()
        if args.cache is not None:
            args.cache.write_text(json.dumps({"costs": costs, "traces": traces}))
    cost = interpolate(costs)
    print("step of r rows, ms (and per row): " + ", ".join(f"{r}: {c:.0f} ({c / r:.1f})" for r, c in costs.items()))
    rules: dict[str, Callable[[list[int], list[int]], Rule]] = {
        "XiaoQ (5-token match, <= 2x its length; from 12 matched: 48)": lambda pr, re: XiaoQ(48),
        "... from 8 matched: 48": lambda pr, re: XiaoQ(48, 8),
        "... from 16 matched: 48": lambda pr, re: XiaoQ(48, 16),
        "... never the whole 48 (the previous rule)": lambda pr, re: XiaoQ(48, 10 ** 6),
        "earlier rule (4..2-token suffix, 8)": lambda pr, re: Earlier(),
        "llama.cpp ngram-simple (12, 48)": lambda pr, re: NgramSimple(),
        "oracle (best possible lookup)": lambda pr, re: Oracle(re, len(pr), cost),
    }
    names = list(traces)
    print("\ntokens/s relative to no drafting\n")
    print("| rule | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, make in rules.items():
        cells = []
        for name in names:
            pr, re = traces[name]
            cells.append(replay(pr, re, make(pr, re), args.tokens, cost) / replay(pr, re, Rule(), args.tokens, cost))
        print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
