"""A monitor episode's per-lead trend as SVG: T amplitude (mV) over time, the baseline level, the episode's span
shaded, and where the opening and closing windows were (docs/SPEC.md §13.1 `episode`). A chart, not paper: the
time axis fits the page, only the ECG windows are drawn at true scale."""
from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from integrations.dashboard.web.view import parse_time

PANEL_W, PANEL_H, LEFT, GAP = 240.0, 28.0, 18.0, 6.0
TRACE, BASELINE, SPAN = "#111111", "#1f4fd1", "#fde2b8"


def _per_lead(value: Any, lead: str) -> float | None:
    if isinstance(value, dict):
        v = value.get(lead)
    else:
        v = value
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def render_trend(episode: dict[str, Any], svg_id: str = "trend") -> str:
    points = [(parse_time(p.get("t")), p.get("lead") or {}) for p in episode.get("trend") or []]
    points = [(t, leads) for t, leads in points if t is not None]
    if not points:
        raise ValueError("no trend points")
    leads = list(episode.get("leads") or []) or sorted({lead for _, ls in points for lead in ls})
    t0, t1 = points[0][0], points[-1][0]
    start, end = parse_time(episode.get("start")), parse_time(episode.get("end"))
    lo = min(x for x in (t0, start) if x is not None)
    hi = max(x for x in (t1, end) if x is not None)
    span_s = max(1.0, (hi - lo).total_seconds())

    def tx(t) -> float:
        return LEFT + (t - lo).total_seconds() / span_s * PANEL_W

    height = len(leads) * (PANEL_H + GAP) + 10
    width = LEFT + PANEL_W + 4
    parts = []
    if start is not None:
        x0, x1 = tx(start), tx(end or hi)
        parts.append(f'<rect class="episode-span" x="{x0:.2f}" y="0" width="{max(0.5, x1 - x0):.2f}" '
                     f'height="{height - 10:.2f}" fill="{SPAN}"><title>episode</title></rect>')
        parts.append(f'<text x="{x0 + 1:.2f}" y="{height - 6:.2f}" font-size="3" fill="{TRACE}">opened</text>')
        if end is not None:
            parts.append(f'<text x="{x1 - 10:.2f}" y="{height - 6:.2f}" font-size="3" fill="{TRACE}">closed</text>')
    for i, lead in enumerate(leads):
        top = i * (PANEL_H + GAP)
        vals = [(tx(t), ls.get(lead, {}).get("t_mv")) for t, ls in points]
        vals = [(x, float(v)) for x, v in vals if isinstance(v, int | float)]
        base = _per_lead(episode.get("baseline_mv"), lead)
        if base is None:
            base = _per_lead({k: (v or {}).get("t") for k, v in (episode.get("baseline") or {}).items()}, lead)
        ys = np.array([v for _, v in vals] + ([base] if base is not None else []) + [0.0])
        vmin, vmax = float(ys.min()), float(ys.max())
        pad = max(0.05, (vmax - vmin) * 0.1)
        vmin, vmax = vmin - pad, vmax + pad

        def ty(v: float, top=top, vmin=vmin, vmax=vmax) -> float:
            return top + PANEL_H - (v - vmin) / (vmax - vmin) * PANEL_H

        parts.append(f'<rect x="{LEFT}" y="{top:.2f}" width="{PANEL_W}" height="{PANEL_H}" fill="none" '
                     'stroke="#999999" stroke-width="0.2"/>')
        parts.append(f'<text x="1" y="{top + 5:.2f}" font-size="3.2" font-weight="bold" fill="{TRACE}">'
                     f'{escape(lead)}</text>')
        parts.append(f'<text x="1" y="{top + 10:.2f}" font-size="2.4" fill="{TRACE}">T mV</text>')
        parts.append(f'<text x="{LEFT - 1}" y="{top + 3:.2f}" font-size="2.2" text-anchor="end" fill="{TRACE}">'
                     f'{vmax:.2f}</text><text x="{LEFT - 1}" y="{top + PANEL_H:.2f}" font-size="2.2" '
                     f'text-anchor="end" fill="{TRACE}">{vmin:.2f}</text>')
        if base is not None:
            parts.append(f'<path class="trend-baseline" d="M{LEFT} {ty(base):.2f}H{LEFT + PANEL_W}" '
                         f'stroke="{BASELINE}" stroke-width="0.3" stroke-dasharray="1.5 1">'
                         f'<title>baseline {base:.2f} mV ({escape(lead)})</title></path>')
        if vals:
            pts = " ".join(f"{x:.2f},{ty(v):.2f}" for x, v in vals)
            parts.append(f'<polyline class="trend-line" points="{pts}" fill="none" stroke="{TRACE}" '
                         'stroke-width="0.35"/>')
    label = (f"Trend of T amplitude per lead ({len(points)} points), baseline dashed, episode span shaded, "
             f"{escape(str(episode.get('state', '')))}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" id="{escape(svg_id)}" role="img" '
            f'aria-label="{label}" width="{width:g}mm" height="{height:g}mm" viewBox="0 0 {width:g} {height:g}">'
            f'<title>{label}</title><rect width="{width:g}" height="{height:g}" fill="#ffffff"/>'
            f'{"".join(parts)}</svg>')
