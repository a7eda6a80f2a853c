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
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench import curve, lifecycle, membw, model_file, report  # noqa: E402
from bench import scenarios as S  # noqa: E402
from bench.contention import ForeignLoad, ForeignLoadAroundChildren  # noqa: E402
from bench.profile import ProfilePlan, find_py_spy  # noqa: E402
from bench.stats import median  # noqa: E402
from bench.servers import (ROOT, RunningServer, ServerError, ServerPool, ServerSpec, llama_server_spec,  # noqa: E402
                           xiaoq_spec)

RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_MODEL = Path.home() / ".cache" / "xiaoq" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SCENARIOS = {
    "1": ("single", S.single_stream),
    "2": ("conversation", S.conversation),
    "3": ("alternating", S.alternating_users),
    "4": ("concurrent", S.concurrent_streams),
    "5": ("interference", S.prefill_interference),
    "7": ("disk_tier", S.disk_tier),
    "8": ("quoting", S.quoting),
}
#: Scenario 8 also runs on a XiaoQ with prompt lookup on (--lookup-draft LOOKUP_DRAFT).
QUOTE_KEY = "8"
LOOKUP_DRAFT = 48
#: Scenario 7 runs on servers of its own (a 64 MB RAM cache each, XiaoQ with its disk tier).
DISK_KEY = "7"
DISK_RAM_MB = 64
#: Scenarios 9 (cold start) and 10 (restart) spawn their own servers in every repetition.
LIFECYCLE = lifecycle.SCENARIOS
COLD_KEY = "9"
#: Scenario 11 (memory, every slot filled) runs on servers of its own, with Workload.fill_slots slots.
MEMORY_KEY = "11"
#: XiaoQ's memory settings in scenario 11: 8-bit K (the greedy-agreement check keeps K at 8 bits),
#: 4.5-bit V, and no speech recognition (a capability llama-server does not have, ~190 MB); its
#: conversation states in a 64 MB RAM cache over its disk tier (as in scenario 7), and no parking of
#: idle slots (``--park-idle-after 0``): parking narrows attention for the streams still decoding
#: but copies each finished slot's state into that RAM cache (measured: +52 MB at peak, and the
#: fill took 29 min with parking against 21 without, the snapshots taken while others prefill).
MEMORY_XIAOQ_ARGS = ("--kv-type-k", "q8_0", "--kv-type-v", "iq4_nl", "--asr", "off", "--park-idle-after", "0")
MEMORY_RAM_MB = 64
#: Seconds one lifecycle scenario may take on one side (scenario 11 with a quantized V cache: ~25 min).
LIFECYCLE_TIMEOUT = 3600.0
#: XiaoQ's default disk tier: scenario 10 resumes from it, and every start scans it.
DEFAULT_DISK_MB = 2048


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

    A side whose ``only`` is set runs just those scenarios (llama-server at XiaoQ's batch size).
    Each repetition's row is appended to ``sink`` before it is filled (or, when ``sink`` already
    holds that repetition from an earlier phase, filled in place), so an interrupted run still
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
            if rep < len(sink):
                row = sink[rep]  # a later phase (scenario 7's own servers) fills the same repetitions
            else:
                row = {}
                sink.append(row)
            for s in sides:
                row.setdefault(s.name, {})
            if per_rep is not None:  # llama-bench each repetition: its tg is as noisy as the rest
                row["llama_bench"] = await asyncio.to_thread(per_rep)
            order = sides if rep % 2 == 0 else list(reversed(sides))
            for key in keys:
                if deadline is not None and time.monotonic() > deadline:
                    log(f"time budget spent: skipping the rest of repetition {rep + 1}")
                    return
                name, fn = SCENARIOS[key]
                for side in order:
                    if side.only is not None and key not in side.only:
                        continue
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
    p.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, short generations, no noise line")
    p.add_argument("--threads", type=int, default=None, help="threads for both servers (default: physical cores)")
    p.add_argument("--ctx", type=int, default=4096, help="context per conversation, both servers (default 4096)")
    p.add_argument("--parallel", type=int, default=4, help="sequence slots, both servers (default 4)")
    p.add_argument("--batch", type=int, default=128,
                   help="XiaoQ --batch, and -b/-ub of the matched-batch llama-server (default 128)")
    p.add_argument("--kv-cache-mb", type=int, default=512,
                   help="RAM state cache: XiaoQ --kv-cache-mb and llama-server --cache-ram (default 512)")
    p.add_argument("--users", type=int, default=None,
                   help="users alternating in scenario 3 (default 3; more users than slots tests the RAM cache)")
    p.add_argument("--scenarios", default="1,2,3,4,5,7,8,9,10,11",
                   help="comma-separated subset of 1-5, 7-11 (default all; 9, 10 and 11 start their own servers)")
    p.add_argument("--matched-scenarios", default="1,5",
                   help="scenarios also run on llama-server at XiaoQ's batch size (default 1,5; '' for none)")
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=None,
                   help="run a second identical llama-server as the noise line (default: on, off with --quick)")
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
    if args.noise is None:
        args.noise = not args.quick
    args.scenario_keys = _keys(p, args.scenarios)
    args.matched_keys = _keys(p, args.matched_scenarios)
    return args


def _keys(p: argparse.ArgumentParser, text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in SCENARIOS and k not in LIFECYCLE]
    if bad:
        p.error(f"unknown scenario(s) {bad}; choose from {', '.join([*SCENARIOS, *LIFECYCLE])}")
    return keys


def _llama(bindir: Path, model: str, threads: int, args: argparse.Namespace, *, cache_mb: int,
           extra: tuple[str, ...] = ()) -> Any:
    return llama_server_spec(bindir / "llama-server", model, threads=threads, ctx=args.ctx, parallel=args.parallel,
                             extra=("--cache-ram", str(cache_mb), "--metrics") + extra)


def head_to_head_specs(args: argparse.Namespace, bindir: Optional[Path], model: str,
                       threads: int) -> list[tuple[str, Any, Optional[frozenset[str]]]]:
    """(side, spec, scenarios it runs) of scenarios 1-5: XiaoQ without its disk tier, llama-server
    at its defaults, its identical twin (the noise line) and llama-server at XiaoQ's batch size."""
    out: list[tuple[str, Any, Optional[frozenset[str]]]] = []
    if bindir:
        out.append((report.L, _llama(bindir, model, threads, args, cache_mb=args.kv_cache_mb), None))
    if args.llama_vs_llama and bindir:
        out.append((report.X, _llama(bindir, model, threads, args, cache_mb=args.kv_cache_mb), None))
    elif not args.no_xiaoq:
        out.append((report.X, xiaoq_spec(model, threads=threads, ctx=args.ctx, parallel=args.parallel,
                                         kv_cache_mb=args.kv_cache_mb, batch=args.batch, extra=tuple(args.xiaoq_arg)),
                    None))
    if bindir and args.noise:
        out.append((report.LB, _llama(bindir, model, threads, args, cache_mb=args.kv_cache_mb), None))
    if QUOTE_KEY in args.scenario_keys and not args.no_xiaoq and not args.llama_vs_llama:
        extra = tuple(args.xiaoq_arg) + ("--lookup-draft", str(LOOKUP_DRAFT))
        out.append((report.LX, xiaoq_spec(model, threads=threads, ctx=args.ctx, parallel=args.parallel,
                                          kv_cache_mb=args.kv_cache_mb, batch=args.batch, extra=extra),
                    frozenset({QUOTE_KEY})))
    if QUOTE_KEY in args.scenario_keys and bindir:
        out.append((report.LL, _llama(bindir, model, threads, args, cache_mb=args.kv_cache_mb,
                                      extra=("--spec-type", "ngram-simple")), frozenset({QUOTE_KEY})))
    matched = frozenset(args.matched_keys) & frozenset(args.scenario_keys)
    if bindir and matched:
        b = str(args.batch)
        out.append((report.LM, _llama(bindir, model, threads, args, cache_mb=args.kv_cache_mb,
                                      extra=("-b", b, "-ub", b)), matched))
    return out


def disk_specs(args: argparse.Namespace, bindir: Optional[Path], model: str,
               threads: int) -> list[tuple[str, Any, Optional[frozenset[str]]]]:
    """Scenario 7's servers: the same 64 MB of RAM for states on both, XiaoQ with its disk tier."""
    out: list[tuple[str, Any, Optional[frozenset[str]]]] = []
    if bindir:
        out.append((report.L, _llama(bindir, model, threads, args, cache_mb=DISK_RAM_MB), None))
        if args.noise:
            out.append((report.LB, _llama(bindir, model, threads, args, cache_mb=DISK_RAM_MB), None))
    if not args.no_xiaoq and not args.llama_vs_llama:
        out.append((report.X, xiaoq_spec(model, threads=threads, ctx=args.ctx, parallel=args.parallel,
                                         kv_cache_mb=DISK_RAM_MB, kv_disk_mb=2048, batch=args.batch,
                                         extra=tuple(args.xiaoq_arg)), None))
    return out


def lifecycle_specs(args: argparse.Namespace, bindir: Optional[Path], model: str,
                    threads: int) -> list[tuple[str, Callable[[], ServerSpec], frozenset[str]]]:
    """(side, a new spec per start, scenarios) of scenarios 9 and 10: XiaoQ as a user starts it (its
    default disk tier, in a fresh data directory), llama-server at its defaults, and llama-server B,
    the noise line, in the cold start."""
    both = frozenset(LIFECYCLE) - {MEMORY_KEY}
    out: list[tuple[str, Callable[[], ServerSpec], frozenset[str]]] = []

    def llama() -> ServerSpec:
        assert bindir is not None
        return _llama(bindir, model, threads, args, cache_mb=args.kv_cache_mb)

    if bindir:
        out.append((report.L, llama, both))
    if args.llama_vs_llama and bindir:
        out.append((report.X, llama, both))
    elif not args.no_xiaoq and not args.llama_vs_llama:
        out.append((report.X, lambda: xiaoq_spec(model, threads=threads, ctx=args.ctx, parallel=args.parallel,
                                                  kv_cache_mb=args.kv_cache_mb, kv_disk_mb=DEFAULT_DISK_MB,
                                                  batch=args.batch, extra=tuple(args.xiaoq_arg)), both))
    if bindir and args.noise:
        out.append((report.LB, llama, frozenset({COLD_KEY})))
    out.sort(key=lambda x: list(report.ALL_SIDES).index(x[0]))
    return out


def memory_specs(args: argparse.Namespace, bindir: Optional[Path], model: str, threads: int,
                 slots: int) -> list[tuple[str, Callable[[], ServerSpec], frozenset[str]]]:
    """Scenario 11's servers, ``slots`` slots of ``--ctx`` each: llama-server at its defaults (f16
    KV), its twin (the noise line), XiaoQ with MEMORY_XIAOQ_ARGS and a 64 MB RAM state cache over
    its disk tier."""
    only = frozenset({MEMORY_KEY})
    out: list[tuple[str, Callable[[], ServerSpec], frozenset[str]]] = []
    lone = argparse.Namespace(**{**vars(args), "parallel": slots})

    def llama() -> ServerSpec:
        assert bindir is not None
        return _llama(bindir, model, threads, lone, cache_mb=args.kv_cache_mb)

    if bindir:
        out.append((report.L, llama, only))
        if args.noise:
            out.append((report.LB, llama, only))
    if args.llama_vs_llama and bindir:
        out.append((report.X, llama, only))
    elif not args.no_xiaoq:
        out.append((report.X, lambda: xiaoq_spec(model, threads=threads, ctx=args.ctx, parallel=slots,
                                                  kv_cache_mb=MEMORY_RAM_MB, kv_disk_mb=DEFAULT_DISK_MB,
                                                  batch=args.batch, extra=MEMORY_XIAOQ_ARGS + tuple(args.xiaoq_arg)),
                    only))
    out.sort(key=lambda x: list(report.ALL_SIDES).index(x[0]))
    return out


async def run_lifecycle(pool: Any, specs: list[tuple[str, Callable[[], ServerSpec], frozenset[str]]],
                        keys: list[str], reps: int, wl: S.Workload, run_id: str, sink: list[dict[str, Any]], *,
                        deadline: Optional[float] = None,
                        transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
    """Scenarios 9 and 10, every side in turn (the order alternating per repetition), into the same
    repetitions as the other scenarios. Past ``deadline`` no new scenario starts; a scenario is
    measured on every side of a repetition or on none."""
    async with httpx.AsyncClient(transport=transport) as client:
        for rep in range(reps):
            if deadline is not None and time.monotonic() > deadline:
                log(f"time budget spent: scenario(s) {', '.join(keys)} not run from repetition {rep + 1} on")
                return
            if rep >= len(sink):
                sink.append({})
            row = sink[rep]
            order = specs if rep % 2 == 0 else list(reversed(specs))
            for key in keys:
                if deadline is not None and time.monotonic() > deadline:
                    log(f"time budget spent: scenario {key} not run in repetition {rep + 1} or later")
                    return
                name, fn = LIFECYCLE[key]
                for side, make_spec, only in order:
                    if key not in only:
                        continue
                    log(f"rep {rep + 1}/{reps} scenario {key} ({name}) on {side}")
                    meter = ForeignLoadAroundChildren().start()
                    try:
                        data = await asyncio.wait_for(fn(pool, make_spec, client, wl, S.W.nonce(run_id, rep, name)),
                                                      timeout=LIFECYCLE_TIMEOUT)
                    except asyncio.TimeoutError:
                        data = {"errors": [f"scenario timed out after {LIFECYCLE_TIMEOUT:.0f} s"]}
                    data["foreign_cores"] = meter.stop()
                    row.setdefault(side, {})[name] = data


def start_sides(pool: ServerPool, specs: list, record: dict[str, Any]) -> dict[str, tuple[RunningServer, Any]]:
    running = {}
    for name, spec, only in specs:
        log(f"starting {name}: {' '.join(spec.argv)}")
        record.setdefault(name, {"label": report.SIDE_LABELS.get(name, name)})
        try:
            running[name] = (pool.start(spec), only)
            record[name].update(available=True, argv=spec.argv, load_seconds=running[name][0].load_seconds)
        except ServerError as exc:
            log(f"{name} UNAVAILABLE: {exc}")
            record[name].update(available=False, error=str(exc).splitlines()[0])
    return running


def _discard(specs: list) -> None:
    """Remove the scratch directories of specs that will never be started."""
    for _, spec, _ in specs:
        if spec.scratch is not None:
            shutil.rmtree(spec.scratch, ignore_errors=True)


def run_phase(pool: ServerPool, specs: list, keys: list[str], args: argparse.Namespace, results: dict[str, Any],
              record: dict[str, Any], *, wl: S.Workload, run_id: str, model: str, deadline: Optional[float],
              bench_tg: Optional[Callable[[], dict[str, Any]]] = None, finish: bool = True) -> None:
    """Start ``specs``, run ``keys`` on them for every repetition, record what the servers say."""
    if not keys or not specs:
        _discard(specs)
        return
    if deadline is not None and time.monotonic() > deadline:
        log(f"time budget spent: scenario(s) {', '.join(keys)} not started")
        _discard(specs)
        return
    running = start_sides(pool, specs, record)
    sides = [S.Side(name, srv.base_url, only=only) for name, (srv, only) in running.items()]
    order = list(report.ALL_SIDES)
    sides.sort(key=lambda s: order.index(s.name))
    if not sides:
        log("no server could be started; nothing to measure")
        return
    procs = {name: srv for name, (srv, _) in running.items()}
    plan = make_profile_plan(args, procs, results) if finish else None
    asyncio.run(run_scenarios(sides, wl, keys, args.reps, run_id, model, results["reps"], per_rep=bench_tg,
                              deadline=deadline, profile=plan, server_pids=[srv.proc.pid for srv in procs.values()]))
    if plan:
        results["profiles"] = plan.summary()
    for side in sides:
        record[side.name]["length_control"] = S.length_control_name(side.length_control)
        record[side.name]["length_control_supported"] = side.supports
    for name, srv in procs.items():
        if finish:
            record[name]["peak_rss_mb"] = srv.peak_rss_mb()
        record[name]["metrics"] = fetch_metrics(srv.base_url)
        pool.stop(srv)


def _argv_of(make: Callable[[], ServerSpec]) -> list[str]:
    """A spec's command line for the report (a port and scratch directory of its own each start)."""
    spec = make()
    if spec.scratch is not None:
        spec.scratch.rmdir()
    return spec.argv


def write_outputs(results: dict[str, Any], out: Path) -> str:
    """The JSON, the curve's SVG and the Markdown report side by side; returns the report."""
    out.parent.mkdir(parents=True, exist_ok=True)
    series = {report.SIDE_LABELS[s]: report.curve_points(results, s) for s in (report.X, report.L)}
    if any(series.values()):
        image = out.with_suffix(".svg")
        ceiling = (results.get("machine") or {}).get("decode_ceiling_tps")
        image.write_text(curve.svg(series, ceiling, "scenario 4: 1, 2, 4 and 8 concurrent streams"))
        results["curve_image"] = image.name
    out.write_text(json.dumps(results, indent=1, default=str))
    md = report.render(results)
    out.with_suffix(".md").write_text(md)
    log(f"raw results: {out} (report: {out.with_suffix('.md').name})")
    return md


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
                   "batch": args.batch, "kv_cache_mb": args.kv_cache_mb, "reps": args.reps, "quick": args.quick,
                   "noise": args.noise, "scenarios": args.scenario_keys, "matched_scenarios": args.matched_keys,
                   "workload": wl.as_dict()},
        "sides": {report.X: {"label": "XiaoQ"}, report.L: {"label": "llama-server"}},
        "disk_sides": {},
        "reps": [],
    }
    bindir, build_error = build_llama(allow_build=not args.no_build)
    if build_error:
        log(f"llama-server/llama-bench UNAVAILABLE ({build_error}); reporting XiaoQ's figures alone")
        results["sides"][report.L]["error"] = build_error
        results["llama_bench"] = {"error": build_error}
    if args.llama_vs_llama:
        results["sides"][report.X]["label"] = "llama-server (B, standing in for XiaoQ)"
    elif args.no_xiaoq:
        results["sides"][report.X]["error"] = "--no-xiaoq"
    results["machine"] = measure_machine(model, threads, args.quick)
    bench_tg: Optional[Callable[[], dict[str, Any]]] = None
    if bindir:
        bench_tg = functools.partial(run_llama_bench, bindir, model, threads, 32 if args.quick else 128,
                                     1 if args.quick else 2)
    deadline = time.monotonic() + args.time_budget * 60 if args.time_budget else None
    phase = dict(wl=wl, run_id=run_id, model=model, deadline=deadline)
    try:
        with ServerPool(RESULTS_DIR / "logs") as pool:
            keys = [k for k in args.scenario_keys if k != DISK_KEY and k not in LIFECYCLE]
            run_phase(pool, head_to_head_specs(args, bindir, model, threads), keys, args, results, results["sides"],
                      bench_tg=bench_tg, **phase)
            if DISK_KEY in args.scenario_keys:
                run_phase(pool, disk_specs(args, bindir, model, threads), [DISK_KEY], args, results,
                          results["disk_sides"], finish=False, **phase)
            life = [k for k in args.scenario_keys if k in LIFECYCLE and k != MEMORY_KEY]
            if life:
                specs = lifecycle_specs(args, bindir, model, threads)
                results["lifecycle_sides"] = {name: _argv_of(make) for name, make, _ in specs}
                asyncio.run(run_lifecycle(pool, specs, life, args.reps, wl, run_id, results["reps"],
                                          deadline=deadline))
            if MEMORY_KEY in args.scenario_keys:
                specs = memory_specs(args, bindir, model, threads, wl.fill_slots)
                results["memory_sides"] = {name: _argv_of(make) for name, make, _ in specs}
                asyncio.run(run_lifecycle(pool, specs, [MEMORY_KEY], args.reps, wl, run_id, results["reps"],
                                          deadline=deadline))
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
        md = write_outputs(results, out)
    print(md)
    return 0 if results["reps"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
