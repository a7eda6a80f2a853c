#!/usr/bin/env python3
"""What a quantized KV cache costs in quality: greedy agreement with the f16 cache on 20 prompts.

    .venv/bin/python bench/kv_agreement.py [--model M] [--max-tokens 64] [--types q8_0/f16,q8_0/q8_0]

Each configuration (K type / V type) answers the same 20 prompts greedily in an in-process engine
with --deterministic (so the figures depend on the cache type, not on batching); every reply is
compared with the f16/f16 reply: identical replies (of 20) and the mean share of the reply that
agrees before the first differing token. Also printed: the KV bytes per token of each
configuration (from a saved sequence state) and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import resolve_model  # noqa: E402

PROMPTS = [
    "What is the capital of France? Answer in one sentence.",
    "Write a Python function that reverses a string.",
    "Explain what a hash table is to a beginner.",
    "Translate into Chinese: The meeting is moved to Thursday afternoon.",
    "用一句话解释什么是机器学习。",
    "List three tips for writing clear emails.",
    "What is 17 times 23? Show the steps.",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "Write a haiku about the sea.",
    "How do I undo the last git commit but keep the changes?",
    "What are the differences between TCP and UDP?",
    "Give me a SQL query that counts orders per customer.",
    "请写一封简短的请假邮件。",
    "Why is the sky blue?",
    "Write a JavaScript function that debounces another function.",
    "What should I pack for a three-day hiking trip?",
    "Explain recursion with a short example.",
    "北京有哪些著名的景点？列举三个。",
    "What does HTTP status 404 mean?",
    "Suggest a name for a small bakery and explain it.",
]


async def answers(model: str, type_k: str, type_v: str, max_tokens: int, threads: int) -> tuple[list[list[int]], float]:
    """The greedy reply tokens to every prompt, and the KV bytes per token of this configuration."""
    import tempfile

    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    with tempfile.TemporaryDirectory(prefix="xiaoq-kvq-") as tmp:
        settings = Settings(threads=threads, parallel=4, ctx=1024, kv_cache_mb=0, kv_disk_mb=0, seed=1,
                            data_dir=Path(tmp), kv_type_k=type_k, kv_type_v=type_v)
        engine = LlamaEngine(model, settings, deterministic=True)
        await engine.start()
        try:
            sampling = SamplingParams(temperature=0, max_tokens=max_tokens, loop_guard=False)
            gens = [await engine.submit(GenerationRequest(messages=[{"role": "user", "content": p}], sampling=sampling))
                    for p in PROMPTS]
            texts = await asyncio.gather(*(g.text() for g in gens))
            tokens = [engine.tokenize(t) for t in texts]
            per_token = await asyncio.to_thread(engine.call_on_scheduler, lambda: _state_bytes_per_token(engine))
            return tokens, per_token
        finally:
            await engine.close()


def _state_bytes_per_token(engine) -> float:  # type: ignore[no-untyped-def]
    """Bytes of a saved sequence state per token: fill slot 0 with 100 tokens, save it, clear it."""
    model = engine._model
    toks = model.tokenize("hello world " * 128, add_special=False, parse_special=False)[:100]
    model.seq_rm(0)
    model.batch.clear()
    model.batch.add_run(toks, 0, 0, False)
    model.decode()
    size = len(model.state_get(0) or b"")
    model.seq_rm(0)
    for s in engine._scheduler.slots:
        if s.id == 0:
            s.tokens = []
    return size / len(toks)


def agreement(ref: list[list[int]], other: list[list[int]]) -> tuple[int, float]:
    """(identical replies, mean share of each reply before the first differing token)."""
    same, shares = 0, []
    for a, b in zip(ref, other):
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        same += a == b
        shares.append(n / max(len(a), len(b), 1))
    return same, sum(shares) / len(shares)


async def main_async(args: argparse.Namespace) -> None:
    configs = [tuple(c.split("/")) for c in args.types.split(",")]
    ref, ref_bytes = await answers(args.model, "f16", "f16", args.max_tokens, args.threads)
    rows = [("f16", "f16", len(PROMPTS), 1.0, ref_bytes)]
    for k, v in configs:
        other, per_token = await answers(args.model, k, v, args.max_tokens, args.threads)
        same, share = agreement(ref, other)
        rows.append((k, v, same, share, per_token))
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; model {args.model}; {len(PROMPTS)} prompts, "
          f"greedy, --deterministic, up to {args.max_tokens} tokens")
    print("| K cache | V cache | replies identical to f16/f16 | mean share agreeing | KV bytes per token |")
    print("| --- | --- | ---: | ---: | ---: |")
    for k, v, same, share, per_token in rows:
        print(f"| {k} | {v} | {same} of {len(PROMPTS)} | {share:.0%} | {per_token:,.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--types", default="q8_0/f16,q8_0/q8_0", help="K/V pairs compared with f16/f16")
    args = p.parse_args(argv)
    args.model = resolve_model(args.model)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
