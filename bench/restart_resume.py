#!/usr/bin/env python3
"""A conversation resumed after a server restart: its time to first token against a cold prefill.

    .venv/bin/python bench/restart_resume.py [--model M] [--reps 3] [--words 1200]

In-process engines (real llama.cpp) sharing one temporary data directory. Per repetition: an
engine answers a long first turn (a document of ``--words`` words and a question), shuts down
(its states go to the disk tier), a new engine with the same model and settings starts and the
conversation's second turn is timed; then the same second-turn prompt (a new nonce, so nothing
matches) is timed on an engine without any state cache: the cold prefill. Printed: medians, the
ratio (target ≤ 0.30) and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import resolve_model  # noqa: E402


def _turns(tag: str, words: int, reply: str = "") -> list[dict[str, str]]:
    from bench.workload import filler

    first = {"role": "user", "content": f"({tag}) Here is a document:\n\n{filler(words, seed=3)}\n\nWhat is it about?"}
    if not reply:
        return [first]
    return [first, {"role": "assistant", "content": reply}, {"role": "user", "content": "And who is it for?"}]


async def _timed(engine: Any, messages: list[dict[str, str]]) -> tuple[float, str, int]:
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    t0 = time.perf_counter()
    gen = await engine.submit(GenerationRequest(messages=messages, sampling=SamplingParams(temperature=0, max_tokens=16)))
    ttft = None
    parts = []
    async for piece in gen:
        ttft = ttft or time.perf_counter() - t0
        parts.append(piece)
    cached = gen.result.usage.cached_tokens if gen.result else 0
    return ttft or float("nan"), "".join(parts), cached


async def _engine(model: str, data: Path, threads: int, cache: bool) -> Any:
    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine

    settings = Settings(threads=threads, parallel=2, ctx=4096, seed=1, data_dir=data,
                        kv_cache_mb=512 if cache else 0, kv_disk_mb=1024 if cache else 0)
    engine = LlamaEngine(model, settings)
    await engine.start()
    return engine


async def main_async(args: argparse.Namespace) -> None:
    resumed, cold, restored = [], [], []
    with tempfile.TemporaryDirectory(prefix="xiaoq-restart-") as tmp:
        for rep in range(args.reps):
            tag = f"r{rep}-{os.getpid()}"
            first = await _engine(args.model, Path(tmp), args.threads, True)
            _, reply, _ = await _timed(first, _turns(tag, args.words))
            await first.close()  # states go to the disk tier
            again = await _engine(args.model, Path(tmp), args.threads, True)
            ttft, _, cached = await _timed(again, _turns(tag, args.words, reply))
            await again.close()
            bare = await _engine(args.model, Path(tmp) / "cold", args.threads, False)
            cold_ttft, _, _ = await _timed(bare, _turns(tag + "-cold", args.words, reply))
            await bare.close()
            resumed.append(ttft)
            cold.append(cold_ttft)
            restored.append(cached)
    load = os.getloadavg()
    r, c = statistics.median(resumed), statistics.median(cold)
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; model {args.model}; threads {args.threads}; "
          f"{args.reps} repetition(s), medians; document {args.words} words")
    print("| second turn | TTFT | tokens restored |")
    print("| --- | ---: | ---: |")
    print(f"| resumed after a restart (disk tier) | {r * 1000:.0f} ms | {statistics.median(restored):.0f} |")
    print(f"| cold prefill of the same length | {c * 1000:.0f} ms | 0 |")
    print(f"| ratio (target ≤ 0.30) | {r / c:.2f} | |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--words", type=int, default=1200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    args.model = resolve_model(args.model)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
