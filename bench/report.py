"""From raw repetitions to the Markdown tables: medians per side, ratios XiaoQ / llama-server.

Pure functions over the results dict that ``bench/run.py`` writes to JSON, so a saved run can be
re-rendered (``python -m bench.report bench/results/<file>.json``) and the smoke test can feed it
synthetic numbers.

Sides: ``xiaoq`` and ``llama-server`` (its defaults) in every scenario; ``llama-server-b``, an
identical second llama-server, whose ratio to the first is the run's noise line; and
``llama-server-matched``, llama-server at XiaoQ's batch size, in the scenarios where the batch
size decides the figure. A repetition whose scenario reported an error is a failed one: the tables
say n of m, and the medians count it as the worst value for its side.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional

from bench.stats import (Row, fmt, fmt_ratio, markdown_table, median, median_counting_failures, meets, percentile,
                         ratio, side_by_side, verdict)

X, L = "xiaoq", "llama-server"
#: The noise line: a second, identical llama-server, compared with the first.
LB = "llama-server-b"
#: llama-server at XiaoQ's batch size (-b N -ub N).
LM = "llama-server-matched"
#: XiaoQ with prompt lookup on (--lookup-draft), in the quoting scenario.
LX = "xiaoq-lookup"
#: llama-server with its own n-gram lookup (--spec-type ngram-simple), in the quoting scenario.
LL = "llama-server-lookup"

TARGETS = {
    "decode": ">=0.97",
    "decode_vs_tg": ">=0.90",
    "ttft": "<=1.00",
    "prefill": ">=1.00",
    "agg1": ">=1.00",
    "agg2": ">=1.00",
    "agg4": ">=1.05",
    "alt_mean": "<=0.50",
    "pause": "<=0.50",
    "disk": "<=0.15",
    "quote": ">=1.30",
    "chat_no_loss": ">=0.98",
    "cold_start": "<=1.00",
    "restart": "<=0.30",
    "memory_fill": "<=0.75",
}
MEMORY_MARGIN_MB = 150.0


def _scenario_data(rep: dict, side: str, scenario: str) -> Any:
    return (rep.get(side) or {}).get(scenario)


def per_rep(results: dict, side: str, scenario: str, get: Callable[[dict], Any]) -> list[Any]:
    """One value per repetition (None where the scenario or the value is missing)."""
    out = []
    for rep in results.get("reps", []):
        data = _scenario_data(rep, side, scenario)
        try:
            out.append(get(data) if data else None)
        except (KeyError, TypeError, IndexError):
            out.append(None)
    return out


def failed_reps(results: dict, side: str, scenario: str) -> list[bool]:
    """Per repetition: did this side's run of the scenario report an error (or time out)?"""
    return [bool(isinstance(d, dict) and d.get("errors")) for d in
            (_scenario_data(rep, side, scenario) for rep in results.get("reps", []))]


def runs_ok(results: dict, side: str, scenario: str) -> tuple[int, int]:
    """(repetitions without error, repetitions that ran) of one side's scenario: "n of m"."""
    ran = [d for d in (_scenario_data(rep, side, scenario) for rep in results.get("reps", [])) if isinstance(d, dict)]
    return sum(1 for d in ran if not d.get("errors")), len(ran)


def better_for(unit: str) -> Optional[str]:
    """Which way a figure improves, from its unit: rates up, times down."""
    return {"tok/s": "higher", "ms": "lower", "MB": "lower"}.get(unit)


def med(results: dict, side: str, scenario: str, get: Callable[[dict], Any], scale: float = 1.0,
        better: Optional[str] = None) -> Optional[float]:
    """Median over repetitions; with ``better``, a failed repetition counts as the worst value."""
    values = per_rep(results, side, scenario, get)
    m = (median_counting_failures(values, failed_reps(results, side, scenario), better) if better
         else median(values))
    return None if m is None else m * scale


def pooled(results: dict, side: str, scenario: str, get: Callable[[dict], list]) -> list[float]:
    """All values of a list-valued figure, across repetitions (for percentiles of few samples)."""
    out: list[float] = []
    for v in per_rep(results, side, scenario, get):
        out += [x for x in (v or []) if x is not None]
    return out


Pair = Callable[..., Row]


def _pair(r: dict, xs: str, ref: str, scenario: str) -> Pair:
    """A row builder for one scenario: ``xs``'s and ``ref``'s medians of one figure."""
    def row(label: str, get: Callable[[dict], Any], unit: str = "ms", digits: int = 0, scale: float = 1000,
            target: Optional[str] = None) -> Row:
        b = better_for(unit)
        return Row(label, med(r, xs, scenario, get, scale, b), med(r, ref, scenario, get, scale, b), unit, digits,
                   target)
    return row


def single_stream_rows(r: dict, xs: str = X, ref: str = L) -> list[Row]:
    row = _pair(r, xs, ref, "single")
    return [
        row("TTFT, short prompt", lambda d: d["ttft"], target=TARGETS["ttft"]),
        row("decode tokens/s", lambda d: d["decode_tps"], "tok/s", 1, 1, TARGETS["decode"]),
        row("prefill tokens/s (long prompt alone)", lambda d: d["prefill_tps"], "tok/s", 0, 1, TARGETS["prefill"]),
        row("tokens generated", lambda d: d["decode_tokens"], "", 0, 1),
        row("prompt tokens (short prompt)", lambda d: d["prompt_tokens"], "", 0, 1),
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


def alternating_rows(r: dict, xs: str = X, ref: str = L, scenario: str = "alternating",
                     target_key: str = "mean_ttft") -> list[Row]:
    row = _pair(r, xs, ref, scenario)
    goal = {"mean_ttft": TARGETS["alt_mean"], "mean_ttft_later": TARGETS["disk"]}

    def fig(label: str, key: str) -> Row:
        return row(label, lambda d: d[key], target=goal.get(key) if key == target_key else None)
    return [fig("mean TTFT, all turns", "mean_ttft"), fig("p95 TTFT, all turns", "p95_ttft"),
            fig("mean TTFT, turns 2+", "mean_ttft_later"), fig("p95 TTFT, turns 2+", "p95_ttft_later")]


def stream_counts(r: dict) -> list[str]:
    return sorted({k for rep in r.get("reps", []) for s in (X, L)
                   for k in ((rep.get(s) or {}).get("concurrent") or {}) if k.isdigit()}, key=int)


def _p95(r: dict, side: str, n: str, key: str, p: float) -> Optional[float]:
    v = percentile(pooled(r, side, "concurrent", lambda d: d[n][key]), p)
    return None if v is None else v * 1000


def concurrency_rows(r: dict, xs: str = X, ref: str = L) -> list[Row]:
    rows: list[Row] = []
    row = _pair(r, xs, ref, "concurrent")
    for n in stream_counts(r):
        label = f"{n} stream{'' if n == '1' else 's'}"
        rows += [
            row(f"{label}: aggregate tokens/s", lambda d, n=n: d[n]["aggregate_tps"], "tok/s", 1, 1,
                TARGETS.get(f"agg{n}")),
            Row(f"{label}: p50 TTFT", _p95(r, xs, n, "ttft", 50), _p95(r, ref, n, "ttft", 50), "ms", 0),
            Row(f"{label}: p95 TTFT", _p95(r, xs, n, "ttft", 95), _p95(r, ref, n, "ttft", 95), "ms", 0),
            Row(f"{label}: p95 gap between tokens", _p95(r, xs, n, "gaps", 95), _p95(r, ref, n, "gaps", 95), "ms", 0),
        ]
    return rows


def curve_points(r: dict, side: str) -> list[tuple[int, float, float]]:
    """(streams, p95 gap in ms, aggregate tokens/s) of one side: the throughput-latency curve."""
    out = []
    for n in stream_counts(r):
        agg = med(r, side, "concurrent", lambda d, n=n: d[n]["aggregate_tps"])
        gap = _p95(r, side, n, "gaps", 95)
        if agg is not None and gap is not None:
            out.append((int(n), gap, agg))
    return out


def interference_rows(r: dict, xs: str = X, ref: str = L) -> list[Row]:
    row = _pair(r, xs, ref, "interference")
    return [row("longest pause of the running stream", lambda d: d["max_pause"], target=TARGETS["pause"]),
            row("its longest gap before the long prompt", lambda d: d["baseline_max_gap"]),
            row("its median gap between tokens", lambda d: d["median_gap"]),
            row("its tokens after the long prompt was sent", lambda d: d["tokens_after"], "", 1, 1),
            row("long prompt: TTFT", lambda d: d["long_ttft"]),
            row("long prompt: prompt tokens", lambda d: d["long_prompt_tokens"], "", 1, 1)]


def quoting_rows(r: dict, xs: str = LX, ref: str = X) -> list[Row]:
    row = _pair(r, xs, ref, "quoting")
    quote_goal = TARGETS["quote"] if xs == LX else None
    chat_goal = TARGETS["chat_no_loss"] if xs == LX and ref == X else None
    return [row("answers that quote their prompt: decode tokens/s", lambda d: d["quote_tps"], "tok/s", 1, 1,
                quote_goal),
            row("an ordinary answer: decode tokens/s", lambda d: d["chat_tps"], "tok/s", 1, 1, chat_goal)]


def cold_start_rows(r: dict, xs: str = X, ref: str = L) -> list[Row]:
    row = _pair(r, xs, ref, "cold_start")
    return [row("process start to first token", lambda d: d["first_token"], target=TARGETS["cold_start"]),
            row("process start to /health 200", lambda d: d["ready"]),
            row("first request's TTFT once healthy", lambda d: d["request_ttft"])]


def restart_rows(r: dict, xs: str = X, ref: str = L) -> list[Row]:
    row = _pair(r, xs, ref, "restart")
    return [row("resumed turn: TTFT", lambda d: d["resumed_ttft"]),
            row("cold prefill of the same length: TTFT", lambda d: d["cold_ttft"]),
            row("resumed turn: prompt tokens", lambda d: d["prompt_tokens"], "", 0, 1),
            row("resumed turn: prompt tokens served from cache", lambda d: d["resumed_cached"], "", 0, 1)]


def restart_target_row(r: dict) -> Row:
    """XiaoQ's resumed turn over its own cold prefill of the same length. Its noise: the same ratio
    on llama-server, which keeps nothing across a restart, so both of its turns are cold prefills
    of one length and their ratio is how far two equal measurements differ in this run."""
    def ratio_of(side: str) -> tuple[Optional[float], Optional[float]]:
        return (med(r, side, "restart", lambda d: d["resumed_ttft"], 1000, "lower"),
                med(r, side, "restart", lambda d: d["cold_ttft"], 1000, "lower"))
    out = Row("resumed / cold prefill", *ratio_of(X), "ms", 0, TARGETS["restart"])
    out.noise = ratio(*ratio_of(L))
    return out


def restart_table(r: dict) -> str:
    t = restart_target_row(r)
    target = markdown_table(["figure", "XiaoQ", "llama-server (no persistence: two cold prefills)", "target", "verdict"],
                            [[t.figure, fmt_ratio(t.ratio, t.target), fmt_ratio(t.noise), t.target or "",
                              verdict(t.ratio, t.target, t.noise)]])
    return (side_by_side(restart_rows(r)) + "\n\nThe target: XiaoQ's resumed turn over its own cold prefill of the "
            "same length. llama-server has no persistence, so its resumed turn is a cold prefill too; its ratio "
            "is the noise of the comparison (two equal cold prefills).\n\n" + target)


def with_noise(r: dict, rows_of: Callable[..., list[Row]], ref: str = L, xs: str = X, **kw: Any) -> list[Row]:
    """``rows_of(r, xs, ref)`` with each row's noise: the same figure, llama-server B / llama-server."""
    rows = rows_of(r, xs, ref, **kw)
    if any(rep.get(LB) for rep in r.get("reps", [])):
        for row, twin in zip(rows, rows_of(r, LB, L, **kw)):
            row.noise = twin.ratio
    return rows


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


def memory_fill_rows(r: dict, xs: str = X, ref: str = L) -> list[Row]:
    row = _pair(r, xs, ref, "memory_fill")
    return [row("peak resident memory (VmHWM), every slot filled", lambda d: d["peak_rss_mb"], "MB", 0, 1,
                TARGETS["memory_fill"]),
            row("prompt tokens held, all slots", lambda d: sum(d["prompt_tokens"]), "", 0, 1)]


def _find(rows: list[Row], figure: str) -> Optional[Row]:
    return next((x for x in rows if x.figure == figure), None)


def target_rows(r: dict) -> list[tuple[str, str, Optional[Row]]]:
    """(target, measure, row) for every ratio target, each with its noise."""
    single = with_noise(r, single_stream_rows)
    conc = with_noise(r, concurrency_rows)
    vs = "XiaoQ / llama-server"
    return [
        ("single-stream decode tokens/s", vs, _find(single, "decode tokens/s")),
        ("TTFT, single short prompt", vs, _find(single, "TTFT, short prompt")),
        ("prefill tokens/s, a long prompt alone", vs, _find(single, "prefill tokens/s (long prompt alone)")),
        ("prefill tokens/s, a long prompt alone (matched batch)", "XiaoQ / llama-server -b/-ub = XiaoQ's batch",
         _find(with_noise(r, single_stream_rows, LM), "prefill tokens/s (long prompt alone)")),
        ("1 stream, aggregate tokens/s", vs, _find(conc, "1 stream: aggregate tokens/s")),
        ("2 streams, aggregate tokens/s", vs, _find(conc, "2 streams: aggregate tokens/s")),
        ("4 streams, aggregate tokens/s", vs, _find(conc, "4 streams: aggregate tokens/s")),
        ("three alternating users, mean TTFT", vs, _find(with_noise(r, alternating_rows), "mean TTFT, all turns")),
        ("longest pause during a long prefill (matched batch)", "XiaoQ / llama-server -b/-ub = XiaoQ's batch",
         _find(with_noise(r, interference_rows, LM), "longest pause of the running stream")),
        ("disk tier: 12 users over a 64 MB RAM cache, mean TTFT turns 2+", vs,
         _find(with_noise(r, alternating_rows, scenario="disk_tier", target_key="mean_ttft_later"),
               "mean TTFT, turns 2+")),
        ("answers quoting their prompt, decode tokens/s", "XiaoQ with lookup / XiaoQ without",
         _find(with_noise(r, quoting_rows, X, LX), "answers that quote their prompt: decode tokens/s")),
        ("answers quoting their prompt, decode tokens/s (vs llama-server)",
         "XiaoQ with lookup / llama-server with --spec-type ngram-simple",
         _find(with_noise(r, quoting_rows, LL, LX), "answers that quote their prompt: decode tokens/s")),
        ("ordinary answer with lookup on, decode tokens/s", "XiaoQ with lookup / XiaoQ without",
         _find(with_noise(r, quoting_rows, X, LX), "an ordinary answer: decode tokens/s")),
        ("cold start: process start to first token", vs,
         _find(with_noise(r, cold_start_rows), "process start to first token")),
        ("a conversation resumed after a restart, TTFT",
         "XiaoQ resumed / XiaoQ cold prefill of the same length (noise: llama-server's, two cold prefills)",
         restart_target_row(r)),
        ("peak memory, 8 slots x 4096 all filled", vs,
         _find(with_noise(r, memory_fill_rows), "peak resident memory (VmHWM), every slot filled")),
    ]


#: The issue's targets are medians of at least this many repetitions.
MIN_REPS = 3


def targets(r: dict) -> list[dict[str, Any]]:
    """Every target with its measured ratio (or difference), its noise and its verdict; a ratio
    from fewer than MIN_REPS repetitions is reported but gets no verdict."""
    out = []
    n_reps = len(r.get("reps", []))
    for label, measure, row in target_rows(r):
        if row is None or not row.target:
            continue
        v = row.ratio
        word = verdict(v, row.target, row.noise)
        if v is not None and n_reps < MIN_REPS:
            word = f"? {n_reps} repetition(s), fewer than {MIN_REPS}: no verdict"
        out.append({"target": label, "measure": measure, "value": v, "goal": row.target, "noise": row.noise,
                    "met": None if v is None else meets(v, row.target), "verdict": word})
    xd = med(r, X, "single", lambda d: d["decode_tps"], better="higher")
    tg = (r.get("llama_bench") or {}).get("tg_tps")
    v = ratio(xd, tg)
    goal = TARGETS["decode_vs_tg"]
    out.insert(1, {"target": "single-stream decode vs llama-bench tg", "measure": "XiaoQ / llama-bench tg", "value": v,
                   "goal": goal, "noise": None, "met": None if v is None else meets(v, goal),
                   "verdict": "— not measured" if v is None else ("✓ met" if meets(v, goal) else "✗ missed")})
    xm = ((r.get("sides") or {}).get(X) or {}).get("peak_rss_mb")
    lm = ((r.get("sides") or {}).get(L) or {}).get("peak_rss_mb")
    diff = None if xm is None or lm is None else xm - lm
    met = None if diff is None else diff <= MEMORY_MARGIN_MB
    out.append({"target": "peak memory", "measure": "XiaoQ − llama-server (MB)", "value": diff, "noise": None,
                "goal": f"<={MEMORY_MARGIN_MB:.0f}", "met": met,
                "verdict": {True: "✓ met", False: "✗ missed", None: "— not measured"}[met]})
    return out


def targets_table(r: dict) -> str:
    rows = []
    for t in targets(r):
        digits = 0 if t["target"] == "peak memory" else 2
        value = fmt_ratio(t["value"]) if digits else ("—" if t["value"] is None else f"{t['value']:+.0f}")
        rows.append([t["target"], t["measure"], value, t["goal"], fmt_ratio(t["noise"]), t["verdict"]])
    return markdown_table(["target", "measure", "value", "goal", "noise (llama-server B / A)", "verdict"], rows)


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


SCENARIO_NAMES = {"1": "single", "2": "conversation", "3": "alternating", "4": "concurrent", "5": "interference",
                  "7": "disk_tier", "8": "quoting", "9": "cold_start", "10": "restart",
                  "11": "memory_fill"}
SIDE_LABELS = {X: "XiaoQ", L: "llama-server", LB: "llama-server B", LM: "llama-server (matched batch)",
               LX: "XiaoQ with prompt lookup", LL: "llama-server with n-gram lookup"}
ALL_SIDES = (X, LX, L, LB, LM, LL)


def _present(r: dict, scenario: str) -> list[str]:
    return [s for s in ALL_SIDES if any(_scenario_data(rep, s, scenario) for rep in r.get("reps", []))]


def noise_line(r: dict, scenario: str) -> str:
    """Other processes' CPU (in cores) while this scenario ran, per repetition: the noise behind it."""
    def cells(side: str) -> str:
        vals = per_rep(r, side, scenario, lambda d: d["foreign_cores"])
        return ", ".join("?" if v is None else f"{v:.2f}" for v in vals) or "—"
    parts = [f"{SIDE_LABELS[s]} runs {cells(s)}" for s in (_present(r, scenario) or [X, L])]
    return f"_Other work on the machine meanwhile (cores, per repetition): {'; '.join(parts)}._"


def reps_line(r: dict, scenario: str) -> str:
    """n of m repetitions per side; failed ones are listed under "Request errors"."""
    parts = []
    for s in _present(r, scenario):
        ok, m = runs_ok(r, s, scenario)
        parts.append(f"{SIDE_LABELS[s]} {ok} of {m}")
    if not parts:
        return "_Not run._"
    return ("_Repetitions without error: " + "; ".join(parts) +
            " (a failed one counts in the medians as its side's worst value)._")


def _section_tables(r: dict) -> list[tuple[str, str, Callable[[], str]]]:
    lm_label = "llama-server, matched batch"
    matched = any(rep.get(LM) for rep in r.get("reps", []))

    def single() -> str:
        out = side_by_side(with_noise(r, single_stream_rows)) + "\n\n" + ceilings_table(r)
        if matched:
            out += "\n\nAgainst llama-server at XiaoQ's batch size:\n\n" + side_by_side(
                with_noise(r, single_stream_rows, LM)[:3], lm_label)
        return out

    def interference() -> str:
        out = ""
        if matched:
            out = "Against llama-server at XiaoQ's batch size (the target's reference):\n\n" + side_by_side(
                with_noise(r, interference_rows, LM), lm_label) + "\n\nAgainst llama-server's defaults:\n\n"
        return out + side_by_side(with_noise(r, interference_rows))

    def quoting() -> str:
        return ("XiaoQ with prompt lookup (`--lookup-draft`) against XiaoQ without:\n\n"
                + side_by_side(with_noise(r, quoting_rows, X, LX), "XiaoQ without lookup")
                + "\n\nXiaoQ with prompt lookup against llama-server with its own n-gram lookup "
                "(`--spec-type ngram-simple`, its default sizes):\n\n"
                + side_by_side(with_noise(r, quoting_rows, LL, LX), "llama-server, ngram-simple")
                + "\n\nXiaoQ with prompt lookup against llama-server without lookup:\n\n"
                + side_by_side(with_noise(r, quoting_rows, L, LX))
                + "\n\nXiaoQ (lookup off) against llama-server:\n\n" + side_by_side(with_noise(r, quoting_rows, L, X)))

    def disk() -> str:
        return side_by_side(with_noise(r, alternating_rows, scenario="disk_tier", target_key="mean_ttft_later"))
    return [
        ("1", "1. Single stream", single),
        ("2", "2. A 12-turn conversation (history resent each turn)", lambda: conversation_table(r)),
        ("3", "3. Users alternating turns", lambda: side_by_side(with_noise(r, alternating_rows))),
        ("4", "4. Concurrent streams", lambda: side_by_side(with_noise(r, concurrency_rows))),
        ("5", "5. A long prompt arriving while another stream decodes", interference),
        ("6", "6. Memory", lambda: side_by_side(memory_rows(r))),
        ("7", "7. The disk tier: 12 users over a 64 MB RAM cache (XiaoQ with its disk tier, llama-server with "
              "--cache-ram 64; a row of its own, not a head-to-head of equal configurations)", disk),
        ("8", "8. Answers that quote their prompt (prompt lookup) and an ordinary answer", quoting),
        ("9", "9. Cold start: process start to the first token of a short prompt (a new process per repetition; "
              "the model file in the page cache for every start)", lambda: side_by_side(with_noise(r, cold_start_rows))),
        ("10", "10. A conversation resumed after a server restart (XiaoQ's disk tier kept in its data directory)",
         lambda: restart_table(r)),
        ("11", "11. Memory with every slot filled (8 slots x 4096, one ~3,900-token prompt each, all at once; "
               "XiaoQ with an 8-bit K and 4.5-bit V cache, llama-server with its default f16 cache)",
         lambda: side_by_side(with_noise(r, memory_fill_rows))),
    ]


def _header(r: dict) -> list[str]:
    cfg = r.get("config", {})
    machine = r.get("machine", {})
    sides = r.get("sides", {})
    out = [f"# XiaoQ vs llama-server — {r.get('started', '')}", ""]
    out.append(f"Model `{cfg.get('model')}`; threads {cfg.get('threads')}, ctx {cfg.get('ctx')}, "
               f"parallel {cfg.get('parallel')}, {cfg.get('reps')} repetition(s){' (quick)' if cfg.get('quick') else ''}; "
               "greedy sampling (temperature 0, seed 1234). Medians over repetitions; ratios are XiaoQ / llama-server. "
               "A target is met when its median meets it and the ratio is farther from 1 than the same figure's "
               "noise (llama-server B / llama-server A, two identical servers in this run); otherwise it is "
               "inconclusive.")
    for name in ALL_SIDES:
        s = sides.get(name)
        if s is None:
            continue
        state = "ok" if s.get("available") else f"UNAVAILABLE: {s.get('error', 'not run')}"
        lc, sup = s.get("length_control", "none"), s.get("length_control_supported", s.get("length_control", "none"))
        eos = (f"replies run to max_tokens via `{lc}`" if lc != "none"
               else "replies end where the model ends them (" + (
                   "this server has no ignore_eos/logit_bias" if sup == "none"
                   else f"it supports `{sup}`, the other server does not") + ")")
        out.append(f"- **{s.get('label', name)}**: {state}" + (f"; {eos}; `{' '.join(s.get('argv', []))}`" if s.get("available") else ""))
    for name, s in (r.get("disk_sides") or {}).items():
        out.append(f"- scenario 7, **{SIDE_LABELS.get(name, name)}**: `{' '.join(s.get('argv', []))}`"
                   + ("" if s.get("available") else f" UNAVAILABLE: {s.get('error')}"))
    for name, argv in (r.get("lifecycle_sides") or {}).items():
        out.append(f"- scenarios 9 and 10, **{SIDE_LABELS.get(name, name)}** (a new port and data directory each "
                   f"start): `{' '.join(argv)}`")
    for name, argv in (r.get("memory_sides") or {}).items():
        out.append(f"- scenario 11, **{SIDE_LABELS.get(name, name)}** (a new process each repetition): "
                   f"`{' '.join(argv)}`")
    if machine:
        out.append(f"- machine: {machine.get('cpu', '?')}, memory bandwidth {fmt(machine.get('read_gbs'), 'GB/s')} read "
                   f"on {cfg.get('threads')} thread(s), {fmt(machine.get('copy_gbs'), 'GB/s')} copy (read + write); "
                   f"{fmt((machine.get('weight_bytes') or 0) / 1e6, 'MB', 0)} of weights read per token; "
                   f"load average {machine.get('load_start', '?')} at the start, {machine.get('load_end', '?')} at the end "
                   "(above the core count, other work competes and every figure is noisy)")
    lb = r.get("llama_bench") or {}
    if lb.get("error"):
        out.append(f"- llama-bench: {lb['error']}")
    if not any(rep.get(LB) for rep in r.get("reps", [])):
        out.append("- no noise line in this run (`--no-noise`): every verdict is a plain comparison")
    return out


def render(r: dict) -> str:
    """The whole report as Markdown."""
    cfg = r.get("config", {})
    out = _header(r)
    out += ["", "## Targets", "", targets_table(r), ""]
    if r.get("curve_image"):
        out += ["## Throughput against latency (scenario 4)", "",
                f"![aggregate tokens/s against p95 gap between tokens]({r['curve_image']})", ""]
    wanted = set(cfg.get("scenarios") or "12345") | {"6"}
    for key, title, table in _section_tables(r):
        if key in wanted:
            out += [f"## {title}", "", table(), ""]
            if key in SCENARIO_NAMES:
                out += [reps_line(r, SCENARIO_NAMES[key]), "", noise_line(r, SCENARIO_NAMES[key]), ""]
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
    errors = [(rep_i, side, name, e) for rep_i, rep in enumerate(r.get("reps", [])) for side in ALL_SIDES
              for name, scen in (rep.get(side) or {}).items() if isinstance(scen, dict) for e in scen.get("errors", [])]
    if errors:
        out.append(f"## Request errors ({len(errors)})")
        out += [f"- rep {i + 1}, {side}, {name}: {e}" for i, side, name, e in errors[:40]]
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

