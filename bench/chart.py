"""A dependency-free SVG chart of a run: per workload, the service's, the raw twin's and (where it has one) the limit
twin's requests/s (log scale) and the ratios, written beside latest.json as latest.svg."""

from __future__ import annotations

import math
from html import escape
from typing import Any

BAR_W, GAP, LEFT, TOP, HEIGHT = 28, 36, 60, 40, 220


def svg(result: dict[str, Any]) -> str:
    workloads = list(result["workloads"].items())
    width = max(560, LEFT + max(1, len(workloads)) * (3 * BAR_W + GAP) + 40)
    top_rps = max([w["raw_rps"] for _, w in workloads] + [w["rps"] for _, w in workloads] +
                  [w.get("limit_rps", 0.0) for _, w in workloads] + [10.0])
    decades = max(1, math.ceil(math.log10(top_rps)))

    def y(rps: float) -> float:
        return TOP + HEIGHT - HEIGHT * (math.log10(max(rps, 1.0)) / decades)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{TOP + HEIGHT + 70}" '
             'font-family="sans-serif" font-size="11">',
             f'<text x="{LEFT}" y="18" font-size="13">requests/s (log scale): service over HTTP, raw asyncpg '
             f'replay, limit twin; ratio to the replay (and to the limit) above</text>']
    for d in range(decades + 1):
        yy = TOP + HEIGHT - HEIGHT * d / decades
        parts.append(f'<line x1="{LEFT - 5}" x2="{width - 20}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{10 ** d:g}</text>')
    for i, (name, w) in enumerate(workloads):
        x = LEFT + i * (3 * BAR_W + GAP) + GAP / 2
        bars = [(w["rps"], "#3b78c4"), (w["raw_rps"], "#b8b8b8")]
        if "limit_rps" in w:
            bars.append((w["limit_rps"], "#e0a030"))
        for j, (rps, colour) in enumerate(bars):
            top = y(rps)
            parts.append(f'<rect x="{x + j * BAR_W:.1f}" y="{top:.1f}" width="{BAR_W - 2}" '
                         f'height="{TOP + HEIGHT - top:.1f}" fill="{colour}"><title>{rps:.0f} rps</title></rect>')
        label = f'{w["ratio"]:.2f}' + (f' ({w["limit_ratio"]:.2f})' if "limit_ratio" in w else "")
        parts.append(f'<text x="{x + 1.5 * BAR_W:.1f}" y="{y(max(r for r, _ in bars)) - 6:.1f}" '
                     f'text-anchor="middle">{label}</text>')
        parts.append(f'<text x="{x + 1.5 * BAR_W:.1f}" y="{TOP + HEIGHT + 16}" '
                     f'text-anchor="middle">{escape(name)}</text>')
    legend_y = TOP + HEIGHT + 40
    parts += [f'<rect x="{LEFT}" y="{legend_y}" width="10" height="10" fill="#3b78c4"/>',
              f'<text x="{LEFT + 14}" y="{legend_y + 9}">service (HTTP)</text>',
              f'<rect x="{LEFT + 110}" y="{legend_y}" width="10" height="10" fill="#b8b8b8"/>',
              f'<text x="{LEFT + 124}" y="{legend_y + 9}">raw asyncpg replay</text>',
              f'<rect x="{LEFT + 240}" y="{legend_y}" width="10" height="10" fill="#e0a030"/>',
              f'<text x="{LEFT + 254}" y="{legend_y + 9}">limit twin (hand-written SQL)</text>', "</svg>"]
    return "\n".join(parts) + "\n"
