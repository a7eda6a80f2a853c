#!/usr/bin/env python3
"""XiaoQ vs llama-server, side by side, on the same GGUF, threads, context and sampling.

    .venv/bin/python bench/run.py [--model M] [--reps 3] [--quick]

Builds (or reuses) llama-server and llama-bench from the llama.cpp that XiaoQ's llama-cpp-python
vendors, measures memory bandwidth once, starts both servers on free 127.0.0.1 ports, then in
each repetition runs llama-bench ``tg`` and every scenario on each server in turn, alternating
which server goes first, and prints Markdown tables of medians and XiaoQ / llama-server ratios. Raw numbers go
to bench/results/<timestamp>.json. Both servers are stopped on exit, Ctrl-C or error. See
bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench import membw, model_file, report  # noqa: E402
from bench import scenarios as S  # noqa: E402
from bench.contention import ForeignLoad  # noqa: E402
from bench.profile import ProfilePlan, find_py_spy  # noqa: E402
from bench.stats import median  # noqa: E402
from bench.servers import ROOT, RunningServer, ServerError, ServerPool, llama_server_spec, xiaoq_spec  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_MODEL = Path.home() / ".cache" / "xiaoq" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SCENARIOS = {
    "1": ("single", S.single_stream),
    "2": ("conversation", S.conversation),
    "3": ("alternating", S.alternating_users),
    "4": ("concurrent", S.concurrent_streams),
    "5": ("interference", S.prefill_interference),
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def resolve_model(arg: Optional[str]) -> str:
    """--model, then XIAOQ_BENCH_MODEL, then the shared get-qwen-gguf.sh output when present."""
    if arg:
        return arg
    if os.environ.get("XIAOQ_BENCH_MODEL"):
        return os.environ["XIAOQ_BENCH_MODEL"]
    script = ROOT.parent / "shared" / "models" / "get-qwen-gguf.sh"
    if DEFAULT_MODEL.is_file():
        return str(DEFAULT_MODEL)
    if script.is_file():
        log(f"fetching the benchmark model with {script}")
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[-1]
    raise SystemExit("no model: pass --model PATH.gguf or set XIAOQ_BENCH_MODEL")


def default_threads() -> int:
    try:
        from xiaoq.config import physical_cores

        return physical_cores()
    except ImportError:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def build_llama(allow_build: bool) -> tuple[Optional[Path], Optional[str]]:
    """The bin dir holding llama-server and llama-bench, or (None, why not)."""
    script = ROOT / "bench" / "build_llama.sh"
    env = dict(os.environ)
    if not allow_build:
        env["BENCH_NO_BUILD"] = "1"
    log("building or reusing llama-server / llama-bench (bench/build_llama.sh)")
    try:
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=3600)
    except subprocess.TimeoutExpired:
        return None, "build_llama.sh took over an hour"
    if out.returncode != 0 or not out.stdout.strip():
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return None, "build_llama.sh: " + re.sub(r"\x1b\[[0-9;]*m", "", last).replace("[build_llama] ", "")
    return Path(out.stdout.strip().splitlines()[-1]), None


def run_llama_bench(bindir: Path, model: str, threads: int, n_gen: int, reps: int) -> dict[str, Any]:
    """llama-bench ``tg``: llama.cpp's raw decode speed with no server around it."""
    argv = [str(bindir / "llama-bench"), "-m", model, "-p", "0", "-n", str(n_gen), "-t", str(threads),
            "-r", str(reps), "-o", "json"]
    log("llama-bench: " + " ".join(argv))
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        rows = json.loads(out.stdout)
        tg = [row for row in rows if row.get("n_gen", 0) > 0]
        return {"tg_tps": tg[0]["avg_ts"], "tg_stddev": tg[0].get("stddev_ts"), "n_gen": n_gen, "argv": argv}
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError, KeyError, OSError) as exc:
        return {"error": f"llama-bench failed: {exc}", "argv": argv}


def measure_machine(model: str, threads: int, quick: bool) -> dict[str, Any]:
    load_start = round(os.getloadavg()[0], 1)
    log("measuring memory bandwidth")
    size = 256 if quick else 1024
    read = membw.read_bandwidth_gbs(threads=threads, size_mb=size, trials=3 if quick else 5)
    copy = membw.copy_bandwidth_gbs(size_mb=size // 2, trials=3 if quick else 5)
    weight_bytes = model_file.bytes_per_token(model)
    best = max(read, copy)
    return {"cpu": platform.processor() or _cpu_name(), "read_gbs": read, "copy_gbs": copy, "best_gbs": best,
            "weight_bytes": weight_bytes, "decode_ceiling_tps": membw.decode_ceiling_tps(best, weight_bytes),
            "load_start": load_start}


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return platform.machine()


async def prepare(side: S.Side, eog_ids: Callable[[], list[int]]) -> None:
    side.length_control = await S.find_length_control(side, eog_ids)
    side.supports = S.length_control_name(side.length_control)
    await S.warm_up(side)


async def run_scenarios(sides: list[S.Side], wl: S.Workload, keys: list[str], reps: int, run_id: str,
                        model: str, sink: list[dict[str, Any]], *,
                        per_rep: Optional[Callable[[], dict[str, Any]]] = None,
                        deadline: Optional[float] = None,
                        transport: Optional[httpx.AsyncBaseTransport] = None,
                        profile: Optional[ProfilePlan] = None,
                        server_pids: Optional[list[int]] = None) -> None:
    """Every scenario, on every side, alternating which side goes first in each repetition.

    Each repetition's row is appended to ``sink`` before it is filled, so an interrupted run still
    reports what it measured. Past ``deadline`` (time.monotonic()) no new scenario starts: a
    scenario is always measured on both sides or on neither, so medians compare like with like.
    ``transport`` is for tests (an in-process fake server).
    """
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=8)
    async with httpx.AsyncClient(limits=limits, transport=transport) as client:
        eog_ids = functools.cache(lambda: model_file.eog_token_ids(model))
        for side in sides:
            side.client = client
            await prepare(side, eog_ids)
            log(f"{side.name}: replies run to max_tokens via {S.length_control_name(side.length_control)}")
        if any(not side.length_control for side in sides):
            # Equal work beats longer work: if one server cannot be held to max_tokens, neither is,
            # and both generate the model's own (greedy, so identical) replies.
            log("not every server can ignore end-of-generation: replies end naturally on both")
            for side in sides:
                side.length_control = {}
        for rep in range(reps):
            if deadline is not None and time.monotonic() > deadline:
                log(f"time budget spent: stopping after {rep} repetition(s)")
                return
            row: dict[str, Any] = {s.name: {} for s in sides}
            sink.append(row)
            if per_rep is not None:  # llama-bench each repetition: its tg is as noisy as the rest
                row["llama_bench"] = await asyncio.to_thread(per_rep)
            order = sides if rep % 2 == 0 else list(reversed(sides))
            for key in keys:
                if deadline is not None and time.monotonic() > deadline:
                    log(f"time budget spent: skipping the rest of repetition {rep + 1}")
                    return
                name, fn = SCENARIOS[key]
                for side in order:
                    log(f"rep {rep + 1}/{reps} scenario {key} ({name}) on {side.name}")
                    tag = S.W.nonce(run_id, rep, name)
                    recorder = profile.recorder(side.name, name, rep) if profile else None
                    if recorder:
                        recorder.start()
                    meter = ForeignLoad(server_pids or []).start()
                    try:
                        row[side.name][name] = await asyncio.wait_for(fn(side, wl, tag), timeout=1800)
                    except asyncio.TimeoutError:
                        row[side.name][name] = {"errors": ["scenario timed out after 1800 s"]}
                    finally:
                        if isinstance(row[side.name].get(name), dict):
                            row[side.name][name]["foreign_cores"] = meter.stop()
                        if recorder and profile:
                            profile.keep(name, await asyncio.to_thread(recorder.stop))


def make_profile_plan(args: argparse.Namespace, running: dict[str, RunningServer],
                      results: dict[str, Any]) -> Optional[ProfilePlan]:
    """py-spy sampling of the real XiaoQ process, when --profile asks and py-spy is there."""
    if not args.profile:
        return None
    exe = find_py_spy()
    if exe is None or report.X not in running or args.llama_vs_llama:
        why = "py-spy not found (see bench/profile.py)" if exe is None else "XiaoQ is not running"
        log(f"--profile: {why}; no profile")
        results["profile_error"] = why
        return None
    out_dir = RESULTS_DIR / "profiles" / time.strftime("%Y%m%d-%H%M%S")
    log(f"--profile: sampling XiaoQ (pid {running[report.X].proc.pid}) into {out_dir}; its figures carry py-spy's overhead")
    return ProfilePlan(exe, {report.X: running[report.X].proc.pid}, out_dir, native=args.profile_native)


def fetch_metrics(base_url: str) -> Optional[str]:
    """The server's /metrics text after the run (cache hits, batch sizes...), kept in the JSON."""
    try:
        resp = httpx.get(f"{base_url}/metrics", timeout=10)
        return resp.text[:20000] if resp.status_code == 200 else None
    except httpx.HTTPError:
        return None


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="GGUF file (default: $XIAOQ_BENCH_MODEL, then get-qwen-gguf.sh's file)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per scenario and side (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, short generations")
    p.add_argument("--threads", type=int, default=None, help="threads for both servers (default: physical cores)")
    p.add_argument("--ctx", type=int, default=4096, help="context per conversation, both servers (default 4096)")
    p.add_argument("--parallel", type=int, default=4, help="sequence slots, both servers (default 4)")
    p.add_argument("--kv-cache-mb", type=int, default=512,
                   help="RAM state cache: XiaoQ --kv-cache-mb and llama-server --cache-ram (default 512)")
    p.add_argument("--users", type=int, default=None,
                   help="users alternating in scenario 3 (default 3; more users than slots tests the RAM cache)")
    p.add_argument("--scenarios", default="1,2,3,4,5", help="comma-separated subset of 1-5 (default all)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="start no new scenario after MIN minutes of measuring (finished ones are reported)")
    p.add_argument("--no-build", action="store_true", help="use llama-server only if already built")
    p.add_argument("--no-xiaoq", action="store_true", help="measure llama-server alone")
    p.add_argument("--profile", action="store_true",
                   help="sample XiaoQ with py-spy during each scenario and report where its time goes")
    p.add_argument("--profile-native", action="store_true", help="with --profile: include native (C) frames")
    p.add_argument("--llama-vs-llama", action="store_true",
                   help="harness check: a second llama-server takes XiaoQ's place (ratios should be ~1)")
    p.add_argument("--xiaoq-arg", action="append", default=[], help="extra argument for xiaoq serve (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="JSON results path (default bench/results/<time>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 1
    keys = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    bad = [k for k in keys if k not in SCENARIOS]
    if bad:
        p.error(f"unknown scenario(s) {bad}; choose from 1-5")
    args.scenario_keys = keys
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    model = resolve_model(args.model)
    threads = args.threads or default_threads()
    wl = S.Workload.quick() if args.quick else S.Workload()
    if args.users:
        wl.users = args.users
    run_id = time.strftime("%H%M%S")
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "config": {"model": model, "threads": threads, "ctx": args.ctx, "parallel": args.parallel,
                   "kv_cache_mb": args.kv_cache_mb, "reps": args.reps, "quick": args.quick,
                   "scenarios": args.scenario_keys, "workload": wl.as_dict()},
        "sides": {report.X: {"label": "XiaoQ"}, report.L: {"label": "llama-server"}},
        "reps": [],
    }
    bindir, build_error = build_llama(allow_build=not args.no_build)
    if build_error:
        log(f"llama-server/llama-bench UNAVAILABLE ({build_error}); reporting XiaoQ's figures alone")
        results["sides"][report.L]["error"] = build_error
        results["llama_bench"] = {"error": build_error}
    results["machine"] = measure_machine(model, threads, args.quick)
    bench_tg: Optional[Callable[[], dict[str, Any]]] = None
    if bindir:
        bench_tg = functools.partial(run_llama_bench, bindir, model, threads, 32 if args.quick else 128,
                                     1 if args.quick else 2)

    log_dir = RESULTS_DIR / "logs"
    running: dict[str, RunningServer] = {}
    try:
        with ServerPool(log_dir) as pool:
            specs = []
            if bindir:
                specs.append((report.L, llama_server_spec(bindir / "llama-server", model, threads=threads, ctx=args.ctx,
                                                          parallel=args.parallel,
                                                          extra=("--cache-ram", str(args.kv_cache_mb), "--metrics"))))
            if args.llama_vs_llama and bindir:
                results["sides"][report.X]["label"] = "llama-server (B, standing in for XiaoQ)"
                specs.append((report.X, llama_server_spec(bindir / "llama-server", model, threads=threads, ctx=args.ctx,
                                                          parallel=args.parallel,
                                                          extra=("--cache-ram", str(args.kv_cache_mb), "--metrics"))))
            elif not args.no_xiaoq:
                specs.append((report.X, xiaoq_spec(model, threads=threads, ctx=args.ctx, parallel=args.parallel,
                                                   kv_cache_mb=args.kv_cache_mb, extra=tuple(args.xiaoq_arg))))
            else:
                results["sides"][report.X]["error"] = "--no-xiaoq"
            for name, spec in specs:
                log(f"starting {name}: {' '.join(spec.argv)}")
                try:
                    running[name] = pool.start(spec)
                    results["sides"][name].update(available=True, argv=spec.argv,
                                                  load_seconds=running[name].load_seconds)
                except ServerError as exc:
                    log(f"{name} UNAVAILABLE: {exc}")
                    results["sides"][name].update(available=False, error=str(exc).splitlines()[0])
            sides = [S.Side(name, running[name].base_url) for name in (report.X, report.L) if name in running]
            if not sides:
                log("no server could be started; nothing to measure")
            else:
                deadline = time.monotonic() + args.time_budget * 60 if args.time_budget else None
                plan = make_profile_plan(args, running, results)
                asyncio.run(run_scenarios(sides, wl, args.scenario_keys, args.reps, run_id, model, results["reps"],
                                          per_rep=bench_tg, deadline=deadline, profile=plan,
                                          server_pids=[srv.proc.pid for srv in running.values()]))
                if plan:
                    results["profiles"] = plan.summary()
                for side in sides:
                    results["sides"][side.name]["length_control"] = S.length_control_name(side.length_control)
                    results["sides"][side.name]["length_control_supported"] = side.supports
            for name, srv in running.items():
                results["sides"][name]["peak_rss_mb"] = srv.peak_rss_mb()
                results["sides"][name]["metrics"] = fetch_metrics(srv.base_url)
    except KeyboardInterrupt:
        log("interrupted: servers stopped; writing what was measured")
    finally:
        results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        results["machine"]["load_end"] = round(os.getloadavg()[0], 1)
        tg_reps = [rep.get("llama_bench") or {} for rep in results["reps"]]
        if bindir and tg_reps:
            results["llama_bench"] = {"tg_tps": median(r.get("tg_tps") for r in tg_reps), "per_rep": tg_reps,
                                      "error": next((r["error"] for r in tg_reps if r.get("error")), None)}
        results["targets"] = report.targets(results)
        out = args.out or RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, default=str))
        log(f"raw results: {out}")
    print(report.render(results))
    return 0 if results["reps"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
