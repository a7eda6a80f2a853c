"""Scale-out measured: XiaoQ in front of two upstream replicas.

1. KV reuse: 6 conversations, each round in a shuffled (seeded) order, T turns each, the full
   history sent every turn. Through XiaoQ's affinity (``--upstream A --upstream B``) versus a plain
   round-robin balancer alternating between the same two replicas (fresh replicas for each run).
   Printed: cached prompt tokens / prompt tokens per turn, as the upstreams report them in usage.
2. Failover: the same conversations from 2 client threads through XiaoQ; one replica is SIGKILLed
   mid-run. Printed: requests that failed (and how: before or after the first token), the time
   from the kill to the first answer for a conversation that lived on the killed replica, and the
   slowest request after the kill.

Replicas: llama-server from bench/build_llama.sh when built (``--replica llama-server``), or XiaoQ
itself (``--replica xiaoq``; its KV cache keeps several conversations per replica, as
llama-server's prompt cache does). llama-cpp-python's server reports no cached tokens, so it is
not offered here.

    python -m bench.upstreams --model M.gguf [--replica xiaoq|llama-server] [--turns 4]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import httpx

from bench.servers import ServerPool, ServerSpec, free_port, llama_server_spec

SYSTEM = "你是一个简洁的助手。"
QUESTIONS = ["介绍一下{}。", "{}有什么特点？", "再详细说说{}的历史。", "{}和别的相比怎么样？", "总结一下{}。", "关于{}还有什么？"]
TOPICS = ["长城", "熊猫", "茶叶", "丝绸", "京剧", "长江"]


def xiaoq_replica(model: str, threads: int, ctx: int, extra: tuple[str, ...] = ()) -> ServerSpec:
    port = free_port()
    argv = [sys.executable, "-m", "xiaoq", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
            "--threads", str(threads), "--ctx", str(ctx), "--parallel", "2", "--kv-cache-mb", "256", "--kv-disk-mb", "0",
            "--no-access-log", *extra]
    return ServerSpec("xiaoq", argv, port)


def front_spec(upstreams: list[str], model: str, ctx: int) -> ServerSpec:
    port = free_port()
    argv = [sys.executable, "-m", "xiaoq", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
            "--ctx", str(ctx), "--upstream-timeout", "30", "--no-access-log", "--queue", "64"]
    for u in upstreams:
        argv += ["--upstream", u]
    return ServerSpec("xiaoq-front", argv, port)


def replica_spec(kind: str, model: str, threads: int, ctx: int) -> ServerSpec:
    if kind == "llama-server":
        import subprocess

        import os

        script = Path(__file__).resolve().parent / "build_llama.sh"
        bindir = subprocess.run([str(script)], env={**os.environ, "BENCH_NO_BUILD": "1"}, capture_output=True, text=True).stdout.strip()
        if not bindir:
            raise SystemExit("llama-server is not built: run bench/build_llama.sh first, or --replica xiaoq")
        return llama_server_spec(Path(bindir) / "llama-server", model, threads=threads, ctx=ctx, parallel=2,
                                 extra=("--cache-reuse", "256"))
    return xiaoq_replica(model, threads, ctx)


@dataclass
class Turn:
    conv: int
    turn: int
    prompt: int = 0
    cached: int = 0
    ok: bool = False
    error: str = ""
    started: float = 0.0
    seconds: float = 0.0


def schedule(turns: int, seed: int = 7) -> list[tuple[int, int]]:
    """(conversation, turn) pairs: round by round, each round in a shuffled order."""
    rng = random.Random(seed)
    out = []
    for t in range(turns):
        order = list(range(len(TOPICS)))
        rng.shuffle(order)
        out += [(c, t) for c in order]
    return out


def ask(client: httpx.Client, base: str, history: list[dict], max_tokens: int) -> tuple[str, dict]:
    """One streamed turn; returns the reply and the final usage (raises on an error event)."""
    body = {"model": "x", "messages": history, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    text, usage, timings = "", {}, {}
    with client.stream("POST", base + "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.read()[:200]!r}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"error event after {len(text)} chars: {event['error'].get('message', '')[:80]}")
            for choice in event.get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
            usage = event.get("usage") or usage
            timings = event.get("timings") or timings
    if "cache_n" in timings and not (usage.get("prompt_tokens_details") or {}).get("cached_tokens"):
        usage = {**usage, "prompt_tokens_details": {"cached_tokens": timings["cache_n"]}}  # llama-server's own report
    return text, usage


def run_conversations(bases: list[str], turns: int, max_tokens: int, round_robin: bool) -> list[Turn]:
    histories = [[{"role": "system", "content": SYSTEM}] for _ in TOPICS]
    results, k = [], 0
    with httpx.Client(timeout=300) as client:
        for conv, t in schedule(turns):
            base = bases[k % len(bases)] if round_robin else bases[0]
            k += 1
            histories[conv].append({"role": "user", "content": QUESTIONS[t % len(QUESTIONS)].format(TOPICS[conv])})
            rec = Turn(conv, t, started=time.perf_counter())
            reply, usage = ask(client, base, histories[conv], max_tokens)
            rec.seconds = time.perf_counter() - rec.started
            rec.prompt = int(usage.get("prompt_tokens") or 0)
            rec.cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            rec.ok = True
            histories[conv].append({"role": "assistant", "content": reply})
            results.append(rec)
    return results


def reuse_table(name: str, results: list[Turn], turns: int) -> list[str]:
    rows = []
    for t in range(turns):
        at = [r for r in results if r.turn == t]
        prompt, cached = sum(r.prompt for r in at), sum(r.cached for r in at)
        rows.append(f"| {name} | {t + 1} | {prompt / len(at):.0f} | {cached / len(at):.0f} | {cached / prompt:.0%} |")
    later = [r for r in results if r.turn > 0]
    rows.append(f"| {name} | 2..{turns} | | | **{sum(r.cached for r in later) / sum(r.prompt for r in later):.0%}** |")
    return rows


def measure_reuse(args: argparse.Namespace, log_dir: Path) -> list[str]:
    lines = ["| balancing | turn | prompt tokens (mean) | cached (mean) | cached share |", "| --- | --- | --- | --- | --- |"]
    for mode in ("affinity", "round robin"):
        with ServerPool(log_dir) as pool:
            replicas = [pool.start(replica_spec(args.replica, args.model, args.threads, args.ctx)) for _ in range(2)]
            urls = [r.base_url for r in replicas]
            if mode == "affinity":
                front = pool.start(front_spec(urls, args.model, args.ctx))
                results = run_conversations([front.base_url], args.turns, args.max_tokens, round_robin=False)
            else:
                results = run_conversations(urls, args.turns, args.max_tokens, round_robin=True)
        lines += reuse_table(mode, results, args.turns)
        print(f"[bench] {mode}: done", file=sys.stderr)
    return lines


def measure_failover(args: argparse.Namespace, log_dir: Path) -> list[str]:
    from xiaoq.engine.upstream_pool import UpstreamPool, affinity_key

    with ServerPool(log_dir) as pool:
        replicas = [pool.start(replica_spec(args.replica, args.model, args.threads, args.ctx)) for _ in range(2)]
        urls = [r.base_url for r in replicas]
        front = pool.start(front_spec(urls, args.model, args.ctx))
        victim = replicas[1]
        order = UpstreamPool(urls)
        first_user = [QUESTIONS[0].format(t) for t in TOPICS]
        on_victim = {c for c in range(len(TOPICS))
                     if order.order(affinity_key(None, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": first_user[c]}]))[0].url == victim.base_url}
        records: list[Turn] = []
        lock = threading.Lock()
        killed_at: list[float] = []
        total = args.failover_requests

        def worker(convs: list[int]) -> None:
            histories = {c: [{"role": "system", "content": SYSTEM}] for c in convs}
            turn = {c: 0 for c in convs}
            with httpx.Client(timeout=120) as client:
                for i in range(total // 2):
                    c = convs[i % len(convs)]
                    histories[c].append({"role": "user", "content": QUESTIONS[turn[c] % len(QUESTIONS)].format(TOPICS[c])})
                    rec = Turn(c, turn[c], started=time.perf_counter())
                    try:
                        reply, _ = ask(client, front.base_url, histories[c], args.max_tokens)
                        rec.ok = True
                        histories[c].append({"role": "assistant", "content": reply})
                        turn[c] += 1
                    except Exception as e:
                        rec.error = str(e)[:120]
                        histories[c].pop()
                    rec.seconds = time.perf_counter() - rec.started
                    with lock:
                        records.append(rec)
                        if len(records) == total // 3 and not killed_at:
                            victim.proc.kill()  # SIGKILL: no goodbye, streams cut mid-answer
                            killed_at.append(time.perf_counter())

        threads = [threading.Thread(target=worker, args=([0, 2, 4],)), threading.Thread(target=worker, args=([1, 3, 5],))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    kill = killed_at[0]
    failed = [r for r in records if not r.ok]
    after = [r for r in records if r.started + r.seconds >= kill]
    recovered = [r.started + r.seconds - kill for r in after if r.ok and r.conv in on_victim and r.started >= kill]
    mid = [r for r in failed if "after" in r.error and not r.error.startswith("error event after 0 chars")]
    before = [r.seconds for r in records if r.ok and r.started + r.seconds < kill]
    lines = [
        "| requests | failed | failed after the first token | failed before it | median request before the kill | first answer for a moved conversation after the kill | slowest request after the kill |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {len(records)} | {len(failed)} | {len(mid)} | {len(failed) - len(mid)} | {statistics.median(before) if before else float('nan'):.2f} s | "
        f"{(min(recovered) if recovered else float('nan')):.2f} s | {max((r.seconds for r in after), default=0):.2f} s |",
    ]
    for r in failed:
        lines.append(f"<!-- failed: conversation {r.conv} turn {r.turn}: {r.error} -->")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--replica", choices=["xiaoq", "llama-server"], default="xiaoq")
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--failover-requests", type=int, default=36)
    p.add_argument("--skip-reuse", action="store_true")
    args = p.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="xiaoq-bench-upstreams-"))
    print(f"## Scale-out: 2 {args.replica} replicas behind XiaoQ ({Path(args.model).name}, {args.turns} turns x 6 conversations)\n")
    if not args.skip_reuse:
        print("\n".join(measure_reuse(args, log_dir)) + "\n")
    print("\n".join(measure_failover(args, log_dir)))
    print(f"\n(server logs: {log_dir})", file=sys.stderr)


if __name__ == "__main__":
    main()
