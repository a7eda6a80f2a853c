#!/usr/bin/env python3
"""KV reuse across turns and conversations (issue 3): what it saves, turn by turn.

    .venv/bin/python bench/conversation_reuse.py [--model M] [--reps 3] [--quick]

1. A 12-turn conversation with the real model, the client resending the whole history each turn
   (as OpenAI clients do): prompt tokens evaluated per turn (usage.prompt_tokens minus
   usage.prompt_tokens_details.cached_tokens) and time to first token per turn, with reuse ON
   (the history's prefix is unchanged from turn to turn) and OFF (every request opens with a
   different system-prompt nonce, so no cached prefix can match).
2. Three users alternating turns in their own conversations, with the server's per-conversation
   state cache on and off (a second server start).

"Cache off" is the same configuration on both targets: one slot and no state cache (XiaoQ
``--parallel 1 --kv-cache-mb 0``, llama-server ``-np 1 --cache-ram 0``), so only the last prompt's
prefix, still in the one slot, can be reused. "Cache on" is 4 slots and a RAM state cache of
``--kv-cache-mb`` on both (XiaoQ ``--kv-cache-mb``, llama-server ``--cache-ram``); XiaoQ runs in a
temporary data directory without its disk tier. ``--target llama-server`` runs the same against
llama-server, to check the harness or to compare. Raw numbers go to bench/results/reuse-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench import model_file  # noqa: E402
from bench import scenarios as S  # noqa: E402
from bench.run import RESULTS_DIR, build_llama, default_threads, log, resolve_model  # noqa: E402
from bench.servers import ServerError, ServerPool, ServerSpec, llama_server_spec, xiaoq_spec  # noqa: E402
from bench.stats import fmt, fmt_ratio, markdown_table, mean, median, ratio  # noqa: E402


async def _measure(base_url: str, wl: S.Workload, jobs: list[str], reps: int, run_id: str,
                   model: str) -> dict[str, Any]:
    out: dict[str, Any] = {job: [] for job in jobs}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=8)) as client:
        side = S.Side("target", base_url, client=client)
        side.length_control = await S.find_length_control(side, lambda: model_file.eog_token_ids(model))
        out["length_control"] = S.length_control_name(side.length_control)
        await S.warm_up(side)
        for rep in range(reps):
            for job in jobs:
                tag = S.W.nonce(run_id, rep, job)
                log(f"rep {rep + 1}/{reps}: {job}")
                if job == "reuse_on":
                    res = await S.conversation(side, wl, tag, reuse=True)
                elif job == "reuse_off":
                    res = await S.conversation(side, wl, tag, reuse=False)
                else:
                    res = await S.alternating_users(side, wl, tag)
                out[job].append(res)
    return out


def _turn_median(reps: list[dict], key: str, turn: int, scale: float = 1.0) -> Optional[float]:
    vals = [r[key][turn] for r in reps if len(r.get(key) or []) > turn and r[key][turn] is not None]
    m = median(vals)
    return None if m is None else m * scale


def render(results: dict[str, Any]) -> str:
    on = results["runs"].get("cache_on", {})
    off = results["runs"].get("cache_off", {})
    cfg = results["config"]
    lines = [f"# Conversation KV reuse — {cfg['target']} — {results['started']}", "",
             f"Model `{cfg['model']}`, threads {cfg['threads']}, ctx {cfg['ctx']}, {cfg['reps']} repetition(s); "
             "medians over repetitions. Evaluated = prompt_tokens − cached_tokens. Replies run to max_tokens via "
             f"`{on.get('length_control', off.get('length_control', 'none'))}`.", "",
             f"## A {cfg['workload']['turns']}-turn conversation, reuse on vs off", ""]
    r_on, r_off = on.get("reuse_on", []), on.get("reuse_off", [])
    n = max([len(r.get("ttft") or []) for r in r_on + r_off] or [0])
    rows = []
    for t in range(n):
        ton, toff = _turn_median(r_on, "ttft", t, 1000), _turn_median(r_off, "ttft", t, 1000)
        rows.append([str(t + 1), fmt(_turn_median(r_on, "prompt_tokens", t), digits=0),
                     fmt(_turn_median(r_on, "evaluated", t), digits=0), fmt(ton, "ms", 0),
                     fmt(_turn_median(r_off, "evaluated", t), digits=0), fmt(toff, "ms", 0), fmt_ratio(ratio(ton, toff))])
    mon = median([r.get("mean_ttft") for r in r_on])
    moff = median([r.get("mean_ttft") for r in r_off])
    rows.append(["mean", "", "", fmt(None if mon is None else mon * 1000, "ms", 0), "",
                 fmt(None if moff is None else moff * 1000, "ms", 0), fmt_ratio(ratio(mon, moff))])
    lines.append(markdown_table(["turn", "prompt tokens", "evaluated (reuse on)", "TTFT (reuse on)",
                                 "evaluated (reuse off)", "TTFT (reuse off)", "on / off"], rows))
    lines += ["", f"## {cfg['workload']['users']} users alternating turns, per-conversation cache on vs off", ""]
    a_on, a_off = on.get("alternating", []), off.get("alternating", [])

    def m(reps: list[dict], key: str, scale: float = 1000) -> Optional[float]:
        v = median([r.get(key) for r in reps])
        return None if v is None else v * scale

    def ev(reps: list[dict]) -> Optional[float]:
        return median([mean(r.get("evaluated") or []) for r in reps])

    rows = []
    for label, key in [("mean TTFT, all turns", "mean_ttft"), ("p95 TTFT, all turns", "p95_ttft"),
                       ("mean TTFT, turns 2+", "mean_ttft_later")]:
        a, b = m(a_on, key), m(a_off, key)
        rows.append([label, fmt(a, "ms", 0), fmt(b, "ms", 0), fmt_ratio(ratio(a, b))])
    rows.append(["mean prompt tokens evaluated per request", fmt(ev(a_on), digits=0), fmt(ev(a_off), digits=0),
                 fmt_ratio(ratio(ev(a_on), ev(a_off)))])
    lines.append(markdown_table(["figure", "cache on", "cache off", "on / off"], rows))
    errs = [e for runs in results["runs"].values() for reps in runs.values() if isinstance(reps, list)
            for r in reps for e in r.get("errors", [])]
    errs += [f"{k}: {v}" for k, v in results.get("errors", {}).items()]
    if errs:
        lines += ["", "## Errors", ""] + [f"- {e}" for e in errs[:20]]
    return "\n".join(lines)


def cache_spec(target: str, cache_on: bool, *, model: str, threads: int, ctx: int, cache_mb: int,
               bindir: Optional[Path] = None, extra: tuple[str, ...] = ()) -> ServerSpec:
    """The server of one run: the same slots and state-cache budget whichever the target."""
    parallel, mb = (4, cache_mb) if cache_on else (1, 0)
    if target == "xiaoq":
        return xiaoq_spec(model, threads=threads, ctx=ctx, parallel=parallel, kv_cache_mb=mb, extra=extra)
    assert bindir is not None
    return llama_server_spec(bindir / "llama-server", model, threads=threads, ctx=ctx, parallel=parallel,
                             extra=("--cache-ram", str(mb)))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 repetition, shorter replies")
    p.add_argument("--threads", type=int)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--target", choices=["xiaoq", "llama-server"], default="xiaoq")
    p.add_argument("--kv-cache-mb", type=int, default=512, help="RAM state cache when 'on' (default 512)")
    p.add_argument("--xiaoq-arg", action="append", default=[], help="extra argument for xiaoq serve")
    args = p.parse_args(argv)
    reps = 1 if args.quick else args.reps
    model = resolve_model(args.model)
    threads = args.threads or default_threads()
    wl = S.Workload(turn_tokens=32, user_tokens=16) if args.quick else S.Workload()
    run_id = "r" + time.strftime("%H%M%S")
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "errors": {}, "runs": {},
                               "config": {"model": model, "threads": threads, "ctx": args.ctx, "reps": reps,
                                          "target": args.target, "workload": wl.as_dict()}}
    bindir = None
    if args.target == "llama-server":
        bindir, err = build_llama(allow_build=True)
        if err:
            raise SystemExit(err)

    def spec(cache_on: bool) -> ServerSpec:
        return cache_spec(args.target, cache_on, model=model, threads=threads, ctx=args.ctx,
                          cache_mb=args.kv_cache_mb, bindir=bindir, extra=tuple(args.xiaoq_arg))

    plan = [("cache_on", True, ["reuse_on", "reuse_off", "alternating"]), ("cache_off", False, ["alternating"])]
    try:
        with ServerPool(RESULTS_DIR / "logs") as pool:
            for label, cache_on, jobs in plan:
                s = spec(cache_on)
                log(f"{label}: {' '.join(s.argv)}")
                try:
                    srv = pool.start(s)
                except ServerError as exc:
                    log(f"{label}: server failed: {exc}")
                    results["errors"][label] = str(exc).splitlines()[0]
                    continue
                try:
                    results["runs"][label] = asyncio.run(_measure(srv.base_url, wl, jobs, reps, run_id + label, model))
                finally:
                    pool.stop(srv)
    except KeyboardInterrupt:
        log("interrupted: servers stopped")
    out = RESULTS_DIR / f"reuse-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    log(f"raw results: {out}")
    print(render(results))
    return 0 if results["runs"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
