"""Pure statistics and Markdown formatting for the benchmark tables.

Kept free of I/O so the smoke test can check them on synthetic numbers. The machines these
benchmarks run on are noisy, so every figure is a median over repetitions and every comparison
is a ratio measured within one run (XiaoQ / llama-server), never against a number from elsewhere.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

Number = Optional[float]

# "1,234 ms", "0.98 ✓", "—", "12.5 tok/s": a number, an optional unit, an optional mark.
_NUMERIC_CELL = re.compile(r"^(—|[-+]?[\d,]*\.?\d+)( [A-Za-z/%]+)?( [✓✗])?$|^$")


def clean(values: Iterable[Number]) -> list[float]:
    """Drop missing and non-finite values (a failed repetition must not poison a median)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def median(values: Iterable[Number]) -> Number:
    """Median of the finite values, or None when there are none."""
    xs = sorted(clean(values))
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2.0


def mean(values: Iterable[Number]) -> Number:
    xs = clean(values)
    return sum(xs) / len(xs) if xs else None


def percentile(values: Iterable[Number], p: float) -> Number:
    """Linear-interpolated percentile (p in 0..100), the same definition as numpy's default."""
    xs = sorted(clean(values))
    if not xs:
        return None
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile {p} outside 0..100")
    pos = (len(xs) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ratio(numerator: Number, denominator: Number) -> Number:
    """numerator / denominator, None when either side is missing or the denominator is zero.

    A side whose failures decided its median (``inf`` for a time, 0 for a rate) makes the ratio
    ``inf`` or 0: the failure counts against that side."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    if math.isinf(numerator) and math.isinf(denominator):
        return None
    return numerator / denominator if not math.isinf(denominator) else 0.0


def median_counting_failures(values: Iterable[Number], failed: Iterable[bool], better: Optional[str]) -> Number:
    """Median over every repetition that ran, a failed one counting as the worst value.

    ``better`` is "higher" (a failure counts as 0) or "lower" (as ``inf``); with None a failed
    repetition's own value is used when it has one. A repetition that did not run (None, not
    failed) is left out: it is neither a success nor a failure.
    """
    worst = {"higher": 0.0, "lower": math.inf}.get(better or "")
    xs: list[float] = []
    for v, bad in zip(values, failed):
        if bad and worst is not None:
            xs.append(worst)
        elif v is not None and not (isinstance(v, float) and math.isnan(v)):
            xs.append(float(v))
    if not xs:
        return None
    xs.sort()
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2.0


def verdict(value: Number, target: Optional[str], noise: Number) -> str:
    """Whether a ratio meets its target beyond the run's noise.

    ``noise`` is the same figure's ratio between two identical llama-servers in the same run. A
    ratio no farther from 1 than that noise cannot be told apart from it: "inconclusive",
    whichever side of the target it falls on. Without a noise line the plain comparison is
    reported, flagged as such.
    """
    if value is None or not target:
        return "— not measured"
    ok = meets(value, target)
    mark = "✓ met" if ok else "✗ missed"
    if noise is None or not math.isfinite(noise) or not math.isfinite(value):
        return mark + ("" if math.isfinite(value) else " (failed)") + (" (no noise line)" if noise is None else "")
    if abs(value - 1.0) <= abs(noise - 1.0):
        return "? inconclusive"
    return mark


def gaps(times: Sequence[float]) -> list[float]:
    """Differences between consecutive timestamps (inter-token gaps)."""
    return [b - a for a, b in zip(times, times[1:])]


def fmt(value: Number, unit: str = "", digits: int = 1) -> str:
    """A table cell: the number with its unit, an em dash when missing, "failed" when the failed
    repetitions outnumber the others (their worst-case value won the median)."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "failed"
    return f"{value:,.{digits}f}{(' ' + unit) if unit else ''}"


def fmt_ratio(value: Number, target: Optional[str] = None) -> str:
    """A ratio cell like ``0.98`` with a pass/miss mark when a target such as ``>=0.97`` is given."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "failed"
    cell = f"{value:.2f}"
    if target:
        cell += " ✓" if meets(value, target) else " ✗"
    return cell


def meets(value: float, target: str) -> bool:
    """Whether ``value`` satisfies a target written as ``>=0.97`` or ``<=1.10``."""
    target = target.strip()
    if target.startswith(">="):
        return value >= float(target[2:])
    if target.startswith("<="):
        return value <= float(target[2:])
    raise ValueError(f"target must start with >= or <=: {target!r}")


@dataclass
class Row:
    """One figure of a side-by-side table: XiaoQ's median, llama-server's median, their ratio."""

    figure: str
    xiaoq: Number
    llama: Number
    unit: str = ""
    digits: int = 1
    target: Optional[str] = None  # e.g. ">=0.97" for the XiaoQ / llama-server ratio
    note: str = ""
    #: The same ratio between two identical llama-servers of the same run (None: not measured).
    noise: Number = None

    @property
    def ratio(self) -> Number:
        return ratio(self.xiaoq, self.llama)

    def as_dict(self) -> dict:
        return {
            "figure": self.figure,
            "xiaoq": self.xiaoq,
            "llama_server": self.llama,
            "unit": self.unit,
            "ratio": self.ratio,
            "target": self.target,
            "met": None if self.ratio is None or not self.target else meets(self.ratio, self.target),
            "noise": self.noise,
            "verdict": verdict(self.ratio, self.target, self.noise) if self.target else None,
            "note": self.note,
        }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; numeric-looking columns are right-aligned."""
    def is_num(cell: str) -> bool:
        return bool(_NUMERIC_CELL.match(cell))

    align = []
    for i, _ in enumerate(headers):
        col = [r[i] for r in rows]
        align.append("---:" if col and all(is_num(c) for c in col) else "---")
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def side_by_side(rows: Sequence[Row], ref_label: str = "llama-server") -> str:
    """The standard comparison table: figure, XiaoQ, the reference server, ratio (with target
    mark), and when the run had a noise line, that noise and the verdict it allows."""
    noisy = any(x.noise is not None for x in rows)
    noted = any(x.note for x in rows)
    body = []
    for r in rows:
        cells = [r.figure, fmt(r.xiaoq, r.unit, r.digits), fmt(r.llama, r.unit, r.digits),
                 fmt_ratio(r.ratio, r.target), r.target or ""]
        if noisy:
            cells += [fmt_ratio(r.noise), verdict(r.ratio, r.target, r.noise) if r.target else ""]
        body.append(cells + ([r.note] if noted else []))
    headers = ["figure", "XiaoQ", ref_label, f"XiaoQ / {ref_label}", "target"]
    if noisy:
        headers += ["noise (llama-server B / A)", "verdict"]
    if noted:
        headers.append("note")
    return markdown_table(headers, body)
