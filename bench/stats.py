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
    """numerator / denominator, None when either side is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def gaps(times: Sequence[float]) -> list[float]:
    """Differences between consecutive timestamps (inter-token gaps)."""
    return [b - a for a, b in zip(times, times[1:])]


def fmt(value: Number, unit: str = "", digits: int = 1) -> str:
    """A table cell: the number with its unit, or an em dash when missing."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{(' ' + unit) if unit else ''}"


def fmt_ratio(value: Number, target: Optional[str] = None) -> str:
    """A ratio cell like ``0.98`` with a pass/miss mark when a target such as ``>=0.97`` is given."""
    if value is None:
        return "—"
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


def side_by_side(rows: Sequence[Row]) -> str:
    """The standard comparison table: figure, XiaoQ, llama-server, ratio (with target mark)."""
    body = []
    for r in rows:
        body.append([
            r.figure,
            fmt(r.xiaoq, r.unit, r.digits),
            fmt(r.llama, r.unit, r.digits),
            fmt_ratio(r.ratio, r.target),
            r.target or "",
        ] + ([r.note] if any(x.note for x in rows) else []))
    headers = ["figure", "XiaoQ", "llama-server", "XiaoQ / llama-server", "target"]
    if any(x.note for x in rows):
        headers.append("note")
    return markdown_table(headers, body)
