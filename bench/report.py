"""From raw repetitions to the Markdown tables: medians per side, ratios XiaoQ / llama-server.

Pure functions over the results dict that ``bench/run.py`` writes to JSON, so a saved run can be
re-rendered (``python -m bench.report bench/results/<file>.json``) and the smoke test can feed it
synthetic numbers. Targets are the ones issue 5 sets.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional

from bench.stats import Row, fmt, fmt_ratio, markdown_table, median, meets, percentile, ratio, side_by_side

X, L = "xiaoq", "llama-server"

TARGETS = {
    "decode": ">=0.97",
    "decode_vs_tg": ">=0.90",
    "ttft": "<=1.10",
    "agg4": ">=1.00",
    "alt_mean": "<=0.50",
    "pause": "<=0.50",
}
MEMORY_MARGIN_MB = 150.0


def per_rep(results: dict, side: str, scenario: str, get: Callable[[dict], Any]) -> list[Any]:
    """One value per repetition (None where the scenario or the value is missing)."""
    out = []
    for rep in results.get("reps", []):
        data = (rep.get(side) or {}).get(scenario)
        try:
            out.append(get(data) if data else None)
        except (KeyError, TypeError, IndexError):
            out.append(None)
    return out


def med(results: dict, side: str, scenario: str, get: Callable[[dict], Any], scale: float = 1.0) -> Optional[float]:
    m = median(per_rep(results, side, scenario, get))
    return None if m is None else m * scale


def pooled(results: dict, side: str, scenario: str, get: Callable[[dict], list]) -> list[float]:
    """All values of a list-valued figure, across repetitions (for percentiles of few samples)."""
    out: list[float] = []
    for v in per_rep(results, side, scenario, get):
        out += [x for x in (v or []) if x is not None]
    return out


def single_stream_rows(r: dict) -> list[Row]:
    return [
        Row("TTFT, short prompt", med(r, X, "single", lambda d: d["ttft"], 1000),
            med(r, L, "single", lambda d: d["ttft"], 1000), "ms", 0, TARGETS["ttft"]),
        Row("decode tokens/s", med(r, X, "single", lambda d: d["decode_tps"]),
            med(r, L, "single", lambda d: d["decode_tps"]), "tok/s", 1, TARGETS["decode"]),
        Row("prefill tokens/s (long prompt alone)", med(r, X, "single", lambda d: d["prefill_tps"]),
            med(r, L, "single", lambda d: d["prefill_tps"]), "tok/s", 0),
        Row("tokens generated", med(r, X, "single", lambda d: d["decode_tokens"]),
            med(r, L, "single", lambda d: d["decode_tokens"]), "", 0),
        Row("prompt tokens (short prompt)", med(r, X, "single", lambda d: d["prompt_tokens"]),
            med(r, L, "single", lambda d: d["prompt_tokens"]), "", 0),
    ]


def ceilings_table(r: dict) -> str:
    """Measured decode speed against llama-bench tg and the memory-bandwidth bound."""
    xd = med(r, X, "single", lambda d: d["decode_tps"])
    ld = med(r, L, "single", lambda d: d["decode_tps"])
    tg = (r.get("llama_bench") or {}).get("tg_tps")
    ceiling = (r.get("machine") or {}).get("decode_ceiling_tps")
    rows = [
        ["llama-bench tg (engine ceiling)", fmt(tg, "tok/s"), fmt_ratio(ratio(xd, tg), TARGETS["decode_vs_tg"]),
         fmt_ratio(ratio(ld, tg))],
        ["memory bandwidth / weight bytes", fmt(ceiling, "tok/s"), fmt_ratio(ratio(xd, ceiling)),
         fmt_ratio(ratio(ld, ceiling))],
    ]
    return markdown_table(["ceiling", "tokens/s", "XiaoQ decode / ceiling", "llama-server decode / ceiling"], rows)


def conversation_table(r: dict, scenario: str = "conversation") -> str:
    """Per turn: prompt tokens, tokens served from cache, TTFT on both sides and their ratio."""
    n = max([len(v or []) for v in per_rep(r, X, scenario, lambda d: d["ttft"]) + per_rep(r, L, scenario, lambda d: d["ttft"])] or [0])
    rows = []
    for t in range(n):
        def at(key: str, side: str, scale: float = 1.0) -> Optional[float]:
            return med(r, side, scenario, lambda d: d[key][t], scale)
        xt, lt = at("ttft", X, 1000), at("ttft", L, 1000)
        rows.append([str(t + 1), fmt(at("prompt_tokens", X), digits=0), fmt(at("cached_tokens", X), digits=0),
                     fmt(at("prompt_tokens", L), digits=0), fmt(at("cached_tokens", L), digits=0),
                     fmt(xt, "ms", 0), fmt(lt, "ms", 0), fmt_ratio(ratio(xt, lt))])
    xm = med(r, X, scenario, lambda d: d["mean_ttft"], 1000)
    lm = med(r, L, scenario, lambda d: d["mean_ttft"], 1000)
    rows.append(["mean", "", "", "", "", fmt(xm, "ms", 0), fmt(lm, "ms", 0), fmt_ratio(ratio(xm, lm))])
    return markdown_table(["turn", "XiaoQ prompt", "XiaoQ cached", "llama-server prompt", "llama-server cached",
                           "XiaoQ TTFT", "llama-server TTFT", "ratio"], rows)


def alternating_rows(r: dict) -> list[Row]:
    def row(label: str, key: str, target: Optional[str] = None) -> Row:
        return Row(label, med(r, X, "alternating", lambda d: d[key], 1000),
                   med(r, L, "alternating", lambda d: d[key], 1000), "ms", 0, target)
    return [row("mean TTFT, all turns", "mean_ttft", TARGETS["alt_mean"]), row("p95 TTFT, all turns", "p95_ttft"),
            row("mean TTFT, turns 2+", "mean_ttft_later"), row("p95 TTFT, turns 2+", "p95_ttft_later")]


def concurrency_rows(r: dict) -> list[Row]:
    rows: list[Row] = []
    keys = sorted({k for rep in r.get("reps", []) for s in (X, L)
                   for k in ((rep.get(s) or {}).get("concurrent") or {}) if k.isdigit()}, key=int)
    for n in keys:
        def agg(side: str) -> Optional[float]:
            return med(r, side, "concurrent", lambda d: d[n]["aggregate_tps"])

        def pct(side: str, key: str, p: float) -> Optional[float]:
            v = percentile(pooled(r, side, "concurrent", lambda d: d[n][key]), p)
            return None if v is None else v * 1000
        label = f"{n} stream{'' if n == '1' else 's'}"
        rows += [
            Row(f"{label}: aggregate tokens/s", agg(X), agg(L), "tok/s", 1, TARGETS["agg4"] if n == "4" else None),
            Row(f"{label}: p50 TTFT", pct(X, "ttft", 50), pct(L, "ttft", 50), "ms", 0),
            Row(f"{label}: p95 TTFT", pct(X, "ttft", 95), pct(L, "ttft", 95), "ms", 0),
            Row(f"{label}: p95 gap between tokens", pct(X, "gaps", 95), pct(L, "gaps", 95), "ms", 0),
        ]
    return rows


def interference_rows(r: dict) -> list[Row]:
    def row(label: str, key: str, unit: str = "ms", scale: float = 1000, target: Optional[str] = None) -> Row:
        return Row(label, med(r, X, "interference", lambda d: d[key], scale),
                   med(r, L, "interference", lambda d: d[key], scale), unit, 0, target)
    return [row("longest pause of the running stream", "max_pause", target=TARGETS["pause"]),
            row("its longest gap before the long prompt", "baseline_max_gap"),
            row("its median gap between tokens", "median_gap"),
            row("its tokens after the long prompt was sent", "tokens_after", "", 1),
            row("long prompt: TTFT", "long_ttft"),
            row("long prompt: prompt tokens", "long_prompt_tokens", "", 1)]


def memory_rows(r: dict) -> list[Row]:
    xs = (r.get("sides") or {}).get(X) or {}
    ls = (r.get("sides") or {}).get(L) or {}
    xm, lm = xs.get("peak_rss_mb"), ls.get("peak_rss_mb")
    note = ""
    if xm is not None and lm is not None:
        diff = xm - lm
        note = f"XiaoQ − llama-server = {diff:+.0f} MB (target ≤ +{MEMORY_MARGIN_MB:.0f} MB) " + (
            "✓" if diff <= MEMORY_MARGIN_MB else "✗")
    return [Row("peak resident memory (VmHWM)", xm, lm, "MB", 0, None, note)]


def targets(r: dict) -> list[dict[str, Any]]:
    """Issue 5's targets, each with its measured ratio (or difference) and whether it is met."""
    def find(rows: list[Row], figure: str) -> Optional[Row]:
        return next((x for x in rows if x.figure == figure), None)

    out = []
    single = single_stream_rows(r)
    picks = [("single-stream decode tokens/s", find(single, "decode tokens/s")),
             ("TTFT, single short prompt", find(single, "TTFT, short prompt")),
             ("4 streams, aggregate tokens/s", find(concurrency_rows(r), "4 streams: aggregate tokens/s")),
             ("three alternating users, mean TTFT", find(alternating_rows(r), "mean TTFT, all turns")),
             ("longest pause during a 1,500-token prefill", find(interference_rows(r), "longest pause of the running stream"))]
    for label, row in picks:
        if row is not None:
            out.append({"target": label, "measure": "XiaoQ / llama-server", "value": row.ratio, "goal": row.target,
                        "met": None if row.ratio is None or not row.target else meets(row.ratio, row.target)})
    xd = med(r, X, "single", lambda d: d["decode_tps"])
    tg = (r.get("llama_bench") or {}).get("tg_tps")
    v = ratio(xd, tg)
    out.insert(1, {"target": "single-stream decode vs llama-bench tg", "measure": "XiaoQ / llama-bench tg", "value": v,
                   "goal": TARGETS["decode_vs_tg"], "met": None if v is None else meets(v, TARGETS["decode_vs_tg"])})
    xm = ((r.get("sides") or {}).get(X) or {}).get("peak_rss_mb")
    lm = ((r.get("sides") or {}).get(L) or {}).get("peak_rss_mb")
    diff = None if xm is None or lm is None else xm - lm
    out.append({"target": "peak memory", "measure": "XiaoQ − llama-server (MB)", "value": diff,
                "goal": f"<={MEMORY_MARGIN_MB:.0f}", "met": None if diff is None else diff <= MEMORY_MARGIN_MB})
    return out


def targets_table(r: dict) -> str:
    rows = []
    for t in targets(r):
        digits = 0 if t["target"] == "peak memory" else 2
        value = "—" if t["value"] is None else (f"{t['value']:+.0f}" if digits == 0 else f"{t['value']:.2f}")
        mark = {True: "✓ met", False: "✗ missed", None: "— not measured"}[t["met"]]
        rows.append([t["target"], t["measure"], value, t["goal"], mark])
    return markdown_table(["target", "measure", "value", "goal", ""], rows)


# (label, XiaoQ metric, llama-server metric): the servers' own counters over the whole run.
COUNTERS = [
    ("requests' prompt tokens evaluated", "xiaoq_prompt_tokens_evaluated_total", "llamacpp:prompt_tokens_total"),
    ("prompt tokens served from cache", "xiaoq_prompt_tokens_cached_total", "llamacpp:prompt_tokens_cached_total"),
    ("tokens generated", "xiaoq_tokens_generated_total", "llamacpp:tokens_predicted_total"),
    ("llama_decode calls", "xiaoq_decode_steps_total", "llamacpp:n_decode_total"),
    ("RAM state cache hits / misses", "xiaoq_kv_cache_hits_total", None),
    ("", "xiaoq_kv_cache_misses_total", None),
]


def prom_value(text: Optional[str], name: str) -> Optional[float]:
    """The value of an unlabelled sample ``name`` in a Prometheus text exposition, or None."""
    for line in (text or "").splitlines():
        if line.startswith(name + " "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def counters_table(r: dict) -> Optional[str]:
    sides = r.get("sides") or {}
    xt, lt = (sides.get(X) or {}).get("metrics"), (sides.get(L) or {}).get("metrics")
    if not xt and not lt:
        return None
    rows = []
    for label, xm, lm in COUNTERS:
        xv, lv = prom_value(xt, xm), prom_value(lt, lm) if lm else None
        if not label and rows:  # a second value for the row above ("hits / misses")
            rows[-1][1] += f" / {fmt(xv, digits=0)}"
            continue
        rows.append([label, fmt(xv, digits=0), fmt(lv, digits=0)])
    return markdown_table(["counter (whole run, from /metrics)", "XiaoQ", "llama-server"], rows)


SCENARIO_NAMES = {"1": "single", "2": "conversation", "3": "alternating", "4": "concurrent", "5": "interference"}


def noise_line(r: dict, scenario: str) -> str:
    """Other processes' CPU (in cores) while this scenario ran, per repetition: the noise behind it."""
    def cells(side: str) -> str:
        vals = per_rep(r, side, scenario, lambda d: d["foreign_cores"])
        return ", ".join("?" if v is None else f"{v:.2f}" for v in vals) or "—"
    return f"_Other work on the machine meanwhile (cores, per repetition): XiaoQ runs {cells(X)}; llama-server runs {cells(L)}._"


def render(r: dict) -> str:
    """The whole report as Markdown."""
    cfg = r.get("config", {})
    machine = r.get("machine", {})
    sides = r.get("sides", {})
    out = [f"# XiaoQ vs llama-server — {r.get('started', '')}", ""]
    out.append(f"Model `{cfg.get('model')}`; threads {cfg.get('threads')}, ctx {cfg.get('ctx')}, "
               f"parallel {cfg.get('parallel')}, {cfg.get('reps')} repetition(s){' (quick)' if cfg.get('quick') else ''}; "
               "greedy sampling (temperature 0, seed 1234). Medians over repetitions; ratios are XiaoQ / llama-server.")
    for name in (X, L):
        s = sides.get(name) or {}
        state = "ok" if s.get("available") else f"UNAVAILABLE: {s.get('error', 'not run')}"
        lc, sup = s.get("length_control", "none"), s.get("length_control_supported", s.get("length_control", "none"))
        eos = (f"replies run to max_tokens via `{lc}`" if lc != "none"
               else "replies end where the model ends them (" + (
                   "this server has no ignore_eos/logit_bias" if sup == "none"
                   else f"it supports `{sup}`, the other server does not") + ")")
        out.append(f"- **{s.get('label', name)}**: {state}" + (f"; {eos}; `{' '.join(s.get('argv', []))}`" if s.get("available") else ""))
    if machine:
        out.append(f"- machine: {machine.get('cpu', '?')}, memory bandwidth {fmt(machine.get('read_gbs'), 'GB/s')} read "
                   f"on {cfg.get('threads')} thread(s), {fmt(machine.get('copy_gbs'), 'GB/s')} copy (read + write); "
                   f"{fmt((machine.get('weight_bytes') or 0) / 1e6, 'MB', 0)} of weights read per token; "
                   f"load average {machine.get('load_start', '?')} at the start, {machine.get('load_end', '?')} at the end "
                   "(above the core count, other work competes and every figure is noisy)")
    lb = r.get("llama_bench") or {}
    if lb.get("error"):
        out.append(f"- llama-bench: {lb['error']}")
    out += ["", "## Targets (issue 5)", "", targets_table(r), ""]
    sections = [
        ("1", "1. Single stream", lambda: side_by_side(single_stream_rows(r)) + "\n\n" + ceilings_table(r)),
        ("2", "2. A 12-turn conversation (history resent each turn)", lambda: conversation_table(r)),
        ("3", "3. Three users alternating turns", lambda: side_by_side(alternating_rows(r))),
        ("4", "4. Concurrent streams", lambda: side_by_side(concurrency_rows(r))),
        ("5", "5. A long prompt arriving while another stream decodes", lambda: side_by_side(interference_rows(r))),
        ("6", "6. Memory", lambda: side_by_side(memory_rows(r))),
    ]
    wanted = set(cfg.get("scenarios") or "12345") | {"6"}
    for key, title, table in sections:
        if key in wanted:
            out += [f"## {title}", "", table(), ""]
            if key in SCENARIO_NAMES:
                out += [noise_line(r, SCENARIO_NAMES[key]), ""]
    counters = counters_table(r)
    if counters:
        out += ["## Server counters", "", counters, ""]
    if r.get("profiles"):
        out += ["## Where XiaoQ's time goes (py-spy, summed over repetitions)", "",
                "Self = samples in which the function itself was running; total = samples in which it was on "
                "the stack. Idle threads are not sampled.", ""]
        for scenario, frames in r["profiles"].items():
            out += [f"**{scenario}**", "", markdown_table(["function", "self %", "total %"],
                    [[f"`{f}`", f"{s_:.1f}", f"{t:.1f}"] for f, s_, t in frames]), ""]
    elif r.get("profile_error"):
        out += [f"(no profile: {r['profile_error']})", ""]
    errors = [(rep_i, side, e) for rep_i, rep in enumerate(r.get("reps", [])) for side in (X, L)
              for scen in (rep.get(side) or {}).values() if isinstance(scen, dict) for e in scen.get("errors", [])]
    if errors:
        out.append("## Request errors")
        out += [f"- rep {i + 1}, {side}: {e}" for i, side, e in errors[:30]]
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.report RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print(render(json.load(f)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
