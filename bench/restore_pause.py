#!/usr/bin/env python3
"""The pause a running stream sees while another conversation is restored from the disk KV tier.

    .venv/bin/python bench/restore_pause.py [--model M] [--reps 3]

In-process engine (real llama.cpp), 2 slots, a RAM state cache smaller than two conversations,
so earlier conversations' states go to disk. Then, per repetition and mode: one stream decodes;
after 8 of its tokens the page cache is told to drop a spilled conversation's file (a cold read,
as after lunch or a restart) and that conversation's next turn is submitted. Printed: the running
stream's longest gap between tokens from that moment until the resumed turn's first token, its
median gap, and the resumed turn's time to first token, with the file read on the scheduler
thread ("read on the scheduler thread", the old way) and read ahead on a worker thread
("prefetched", the default), the two modes' order alternating from one repetition to the next.
The load average is printed with the figures.
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


def _messages(i: int, more: str = "") -> list[dict[str, str]]:
    from bench.workload import filler

    return [{"role": "user", "content": f"Document {i}:\n\n{filler(900, seed=i)}\n\nSummarize it.{more}"}]


async def _stream_times(gen: Any) -> list[float]:
    times = []
    async for _ in gen:
        times.append(time.perf_counter())
    return times


async def _one(engine: Any, resume: int, prefetch: bool, tag: str) -> dict[str, float]:
    from xiaoq.engine.kv_cache import token_key
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    engine.prefetch_spilled = prefetch
    greedy = SamplingParams(temperature=0, max_tokens=60, ignore_eos=True, loop_guard=False)
    bg = await engine.submit(GenerationRequest(messages=[{"role": "user", "content": f"({tag}) Tell a long story."}],
                                               sampling=greedy))
    task = asyncio.create_task(_stream_times(bg))
    while engine.stats()["tokens_generated_total"] < 8 + engine._bench_base:
        await asyncio.sleep(0.01)
    request = GenerationRequest(messages=_messages(resume, f" ({tag})"), sampling=SamplingParams(temperature=0, max_tokens=4))
    spill = engine._scheduler.cache.spill
    entry, n = spill.lookup(token_key(engine._prompt_tokens(request)))
    if entry is not None and entry.path.exists():
        fd = os.open(entry.path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    t_sent = time.perf_counter()
    resumed = await engine.submit(request)
    first = await _stream_times(resumed)
    times = await task
    engine._bench_base = engine.stats()["tokens_generated_total"]
    window = [t for t in times if t_sent <= t <= (first[0] if first else t_sent)]
    before = [t for t in times if t < t_sent][-1:]
    gaps = [b - a for a, b in zip(before + window, (before + window)[1:])]
    return {"pause": max(gaps) if gaps else float("nan"), "median_gap": statistics.median(
        [b - a for a, b in zip(times, times[1:])]), "ttft": (first[0] - t_sent) if first else float("nan"),
        "restored_tokens": float(resumed.result.usage.cached_tokens) if resumed.result else 0.0, "disk_prefix": float(n)}


def mode_order(modes: list[str], rep: int) -> list[str]:
    """The modes in this repetition's order: reversed every other repetition, so neither mode always
    runs second (on a warmer page cache, a longer-running stream, a fuller disk tier)."""
    return modes if rep % 2 == 0 else list(reversed(modes))


async def main_async(args: argparse.Namespace) -> None:
    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine

    with tempfile.TemporaryDirectory(prefix="xiaoq-pause-") as tmp:
        settings = Settings(threads=args.threads, parallel=2, ctx=2048, kv_cache_mb=16, kv_disk_mb=1024, seed=1,
                            data_dir=Path(tmp))
        engine = LlamaEngine(args.model, settings)
        await engine.start()
        try:
            from xiaoq.engine.types import GenerationRequest, SamplingParams

            n_docs = 2 * args.reps + 2
            for i in range(n_docs):  # each ~1,100 tokens (~13 MB of KV): all but the newest go to disk
                gen = await engine.submit(GenerationRequest(messages=_messages(i), sampling=SamplingParams(temperature=0, max_tokens=4)))
                await gen.text()
            engine._scheduler.cache.spill.flush()
            engine._bench_base = engine.stats()["tokens_generated_total"]
            rows: dict[str, list[dict[str, float]]] = {"read on the scheduler thread": [], "prefetched": []}
            doc = 0
            for rep in range(args.reps):
                for mode in mode_order(list(rows), rep):
                    rows[mode].append(await _one(engine, doc, mode == "prefetched", f"r{rep}{mode[:2]}"))
                    doc += 1
        finally:
            await engine.close()
    print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}; "
          f"model {args.model}; threads {args.threads}; {args.reps} repetition(s), medians; "
          f"first mode per repetition: {', '.join(mode_order(list(rows), i)[0] for i in range(args.reps))}")
    print("| disk restore | running stream's longest gap | its median gap | resumed turn's TTFT | restored tokens |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for mode, rs in rows.items():
        def m(key: str) -> float:
            return statistics.median(r[key] for r in rs)
        print(f"| {mode} | {m('pause') * 1000:.0f} ms | {m('median_gap') * 1000:.0f} ms | {m('ttft') * 1000:.0f} ms "
              f"| {m('restored_tokens'):.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    args.model = resolve_model(args.model)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
