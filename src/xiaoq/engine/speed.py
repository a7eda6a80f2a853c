"""Quick engine speed check (not a test, not the full benchmark in bench/).

    python -m xiaoq.engine.speed MODEL.gguf [--threads 2] [--tokens 128] [--streams 4] [--reps 3]

Each run is a separate process (see main()).

Prints decode tokens/s of one stream for XiaoQ's engine and for llama-cpp-python's own ``Llama``
(the baseline XiaoQ must at least match), alternating the two, and the aggregate tokens/s of
``--streams`` concurrent streams. End-of-generation tokens are biased away so every run generates
exactly ``--tokens`` tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

from ..config import Settings
from .llama_engine import LlamaEngine
from .types import GenerationRequest, SamplingParams

PROMPTS = [
    "Write a long story about a cat who learns to program.",
    "用中文写一篇关于长城的长文章。",
    "Explain in detail how a CPU cache works.",
    "List many facts about the ocean, one per line.",
]


def eog_tokens(model=None, path: str = "") -> list[int]:
    """End-of-generation token ids (biased away so runs have a fixed length)."""
    from .context import LlamaModel

    if model is None:
        import llama_cpp.llama_cpp as C

        from .llama_logs import init_backend

        init_backend()
        mp = C.llama_model_default_params()
        mp.vocab_only = True
        raw = C.llama_model_load_from_file(path.encode(), mp)
        vocab = C.llama_model_get_vocab(raw)
        out = [t for t in range(C.llama_vocab_n_tokens(vocab)) if C.llama_vocab_is_eog(vocab, t)]
        C.llama_model_free(raw)
        return out
    assert isinstance(model, LlamaModel)
    return [t for t in range(model.n_vocab) if model.is_eog(t)]


async def xiaoq_runs(model: str, threads: int, tokens: int, streams: int, reps: int) -> tuple[list[float], list[float], list[float]]:
    engine = LlamaEngine(model, Settings(threads=threads, parallel=max(streams, 1), ctx=2048, batch=128))
    await engine.start()
    m = engine._model
    assert m is not None
    bias = {t: -1000.0 for t in eog_tokens(m)}
    single, multi, ttft = [], [], []
    try:
        for rep in range(reps):
            # a distinct prompt per repetition, so the first-token figure includes a real prefill
            req = GenerationRequest(
                messages=[{"role": "user", "content": f"{PROMPTS[0]} (#{rep})"}],
                sampling=SamplingParams(temperature=0, max_tokens=tokens, logit_bias=bias),
            )
            g = await engine.submit(req)
            await g.text()
            r = g.result
            assert r is not None
            single.append(r.timings.tokens_per_second(r.usage.completion_tokens))
            ttft.append(r.timings.ttft_ms)
            if streams > 1:
                gens = [
                    await engine.submit(
                        GenerationRequest(
                            messages=[{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} (#{rep})"}],
                            sampling=SamplingParams(temperature=0, max_tokens=tokens, logit_bias=bias),
                        )
                    )
                    for i in range(streams)
                ]
                t0 = time.perf_counter()
                await asyncio.gather(*(x.text() for x in gens))
                wall = time.perf_counter() - t0
                total = sum(x.result.usage.completion_tokens for x in gens if x.result)
                multi.append(total / wall)
    finally:
        await engine.close()
    return single, multi, ttft


def baseline_run(llm, tokens: int, rep: int, bias: dict[int, float]) -> float:
    t_first = 0.0
    n = 0
    for _ in llm.create_chat_completion(
        [{"role": "user", "content": f"{PROMPTS[0]} (#{rep})"}],
        temperature=0,
        max_tokens=tokens,
        logit_bias=bias,
        stream=True,
    ):
        n += 1
        if n == 2:
            t_first = time.perf_counter()
    t_end = time.perf_counter()
    return (n - 2) / (t_end - t_first) if n > 2 else 0.0


def child(a: argparse.Namespace) -> None:
    """One measurement in this process, printed as JSON (the parent alternates processes)."""
    if a.child == "xiaoq":
        single, multi, ttft = asyncio.run(xiaoq_runs(a.model, a.threads, a.tokens, a.streams, 1))
        print(json.dumps({"single": single, "multi": multi, "ttft": ttft}))
    else:
        from llama_cpp import Llama

        llm = Llama(a.model, n_ctx=2048, n_threads=a.threads, n_threads_batch=a.threads, n_batch=128, verbose=False)
        bias = {t: -1000.0 for t in eog_tokens(None, a.model)}
        print(json.dumps({"base": [baseline_run(llm, a.tokens, a.rep, bias)]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--child", choices=["xiaoq", "llama"], help=argparse.SUPPRESS)
    ap.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return

    # Each run in its own process: llama.cpp's OpenMP teams from two engines in one process make
    # libgomp stop spin-waiting (more threads than cores) and would slow whichever runs second.
    res: dict[str, list[float]] = {"single": [], "multi": [], "ttft": [], "base": []}
    for rep in range(a.reps):
        kinds = ["xiaoq"] if a.no_baseline else (["xiaoq", "llama"] if rep % 2 == 0 else ["llama", "xiaoq"])
        for kind in kinds:
            cmd = [sys.executable, "-m", "xiaoq.engine.speed", a.model, "--threads", str(a.threads), "--tokens", str(a.tokens),
                   "--streams", str(a.streams), "--child", kind, "--rep", str(rep)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            for k, v in json.loads(out).items():
                res[k] += v
    single, multi, ttft, base = res["single"], res["multi"], res["ttft"], res["base"]

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f}" if xs else "-"

    def best(xs: list[float]) -> str:
        # on a shared machine the best run is the one least disturbed by other processes
        return f"{max(xs):.2f}" if xs else "-"

    print("| figure | XiaoQ engine median / best | llama-cpp-python Llama median / best | ratio of medians / bests |")
    print("|---|---|---|---|")
    ratio = "-"
    if base and single and min(base) > 0:
        ratio = f"{statistics.median(single) / statistics.median(base):.3f} / {max(single) / max(base):.3f}"
    print(f"| single-stream decode tok/s | {med(single)} / {best(single)} | {med(base)} / {best(base)} | {ratio} |")
    print(f"| single-stream TTFT ms (~{len(PROMPTS[0])} chars + system prompt) | {med(ttft)} / {min(ttft):.1f} | - | - |")
    if a.streams > 1:
        print(f"| {a.streams} streams aggregate tok/s | {med(multi)} / {best(multi)} | (one at a time) | - |")


if __name__ == "__main__":
    main()
