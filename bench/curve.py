"""The throughput-latency curve of scenario 4 as a small standalone SVG.

Aggregate tokens/s (up) against the p95 gap between a stream's tokens (right), one line per server,
each point labelled with its number of concurrent streams: where a server sits on this curve says
more than any single ratio (more streams buy throughput with latency). Written by hand rather than
with matplotlib so the bench needs nothing beyond the package's own dependencies; the SVG is text,
so the smoke tests can check what it draws.
"""

from __future__ import annotations

from html import escape
from typing import Optional, Sequence

#: (streams, p95 gap in ms, aggregate tokens/s)
Point = tuple[int, float, float]
COLOURS = ("#d62728", "#1f77b4", "#7f7f7f", "#2ca02c")
W, H, M = 640, 400, 60  # width, height, margin (px)


def _nice_max(v: float) -> float:
    """A round axis end at or above ``v`` (1, 2 or 5 times a power of ten)."""
    if v <= 0:
        return 1.0
    p = 10 ** len(str(int(v))) / 10 if v >= 1 else 0.1
    for m in (1, 2, 5, 10):
        if m * p >= v:
            return m * p
    return 10 * p


def _axes(x_max: float, y_max: float) -> list[str]:
    out = [f'<line x1="{M}" y1="{H - M}" x2="{W - M // 2}" y2="{H - M}" stroke="black"/>',
           f'<line x1="{M}" y1="{H - M}" x2="{M}" y2="{M // 2}" stroke="black"/>']
    for i in range(6):
        x = M + i * (W - 1.5 * M) / 5
        y = H - M - i * (H - 1.5 * M) / 5
        out.append(f'<text x="{x:.0f}" y="{H - M + 16}" font-size="11" text-anchor="middle">{x_max * i / 5:.0f}</text>')
        out.append(f'<text x="{M - 6}" y="{y + 4:.0f}" font-size="11" text-anchor="end">{y_max * i / 5:.0f}</text>')
    out.append(f'<text x="{W / 2:.0f}" y="{H - 18}" font-size="12" text-anchor="middle">'
               'p95 gap between a stream\'s tokens (ms)</text>')
    out.append(f'<text x="16" y="{H / 2:.0f}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 16 {H / 2:.0f})">aggregate tokens/s</text>')
    return out


def svg(series: dict[str, Sequence[Point]], ceiling_tps: Optional[float] = None, title: str = "") -> str:
    """The curve of every series (label → points) with the single-stream bandwidth ceiling as a
    dashed line; an empty figure with a note when there is nothing to draw."""
    pts = [p for s in series.values() for p in s]
    x_max = _nice_max(max([p[1] for p in pts] or [1.0]))
    y_max = _nice_max(max([p[2] for p in pts] + [ceiling_tps or 0.0] or [1.0]))

    def xy(gap: float, tps: float) -> tuple[float, float]:
        return M + gap / x_max * (W - 1.5 * M), H - M - tps / y_max * (H - 1.5 * M)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{W / 2:.0f}" y="18" font-size="13" text-anchor="middle">{escape(title)}</text>']
    out += _axes(x_max, y_max)
    if ceiling_tps:
        _, y = xy(0, ceiling_tps)
        out.append(f'<line x1="{M}" y1="{y:.1f}" x2="{W - M // 2}" y2="{y:.1f}" stroke="black" stroke-dasharray="4 4"/>')
        out.append(f'<text x="{W - M // 2}" y="{y - 4:.1f}" font-size="10" text-anchor="end">'
                   f'memory-bandwidth ceiling, one stream ({ceiling_tps:.1f} tok/s)</text>')
    for i, (label, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        coords = [xy(g, t) for _, g, t in sorted(points)]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (n, _, _), (x, y) in zip(sorted(points), coords):
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            out.append(f'<text x="{x + 6:.1f}" y="{y - 6:.1f}" font-size="11" fill="{colour}">{n}</text>')
        out.append(f'<text x="{M + 10}" y="{M // 2 + 16 * (i + 1)}" font-size="12" fill="{colour}">'
                   f'{escape(label)}</text>')
    if not pts:
        out.append(f'<text x="{W / 2:.0f}" y="{H / 2:.0f}" font-size="14" text-anchor="middle">no data</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
