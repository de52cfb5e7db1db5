"""An accessible, self-contained SVG chart of one marker over time (no script, no external resources).

Built with xml.etree, so every text (marker names, milestone titles) is escaped. Every measurement in the
range is one ``circle.point``; done milestones are solid vertical lines at their completion, planned ones
dashed at their due date; instruments get their severity bands from the instrument registry.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.collections import service
from service.collections.registry import REGISTRY
from service.domain.instruments import INSTRUMENTS
from service.errors import NotFound
from service.progress.service import check_client, check_period
from service.progress.summary import UNIT_WORDS

W, H = 640, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 36, 52
BAND_COLOURS = ("#2e7d32", "#9e9d24", "#f9a825", "#ef6c00", "#c62828")

CHART_DATA = text("""
SELECT
  (SELECT coalesce(json_agg(json_build_object('value', x.value, 'at', x.observed_at) ORDER BY x.observed_at, x.id),
                   '[]'::json)
   FROM measurements x
   WHERE x.org_id = :org AND x.marker_id = :marker AND x.deleted_at IS NULL
     AND (CAST(:since AS timestamptz) IS NULL OR x.observed_at >= CAST(:since AS timestamptz))
     AND (CAST(:until AS timestamptz) IS NULL OR x.observed_at <= CAST(:until AS timestamptz))) AS points,
  (SELECT coalesce(json_agg(json_build_object('title', mi.title, 'status', mi.status,
                                              'at', coalesce(mi.completed_at, CAST(mi.due_date AS timestamptz)))
                            ORDER BY coalesce(mi.completed_at, CAST(mi.due_date AS timestamptz)), mi.id), '[]'::json)
   FROM milestones mi JOIN goals g ON g.org_id = mi.org_id AND g.id = mi.goal_id AND g.deleted_at IS NULL
   WHERE mi.org_id = :org AND mi.client_id = :client AND mi.deleted_at IS NULL AND mi.status <> 'skipped'
     AND (mi.completed_at IS NOT NULL OR mi.due_date IS NOT NULL)
     AND (g.id = CAST(:goal AS uuid) OR g.target ->> 'marker_id' = :marker_text)) AS milestones
""")


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _nice_step(span: float) -> float:
    raw = span / 6 or 1
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


DEFAULT_MARKER = text("""
SELECT m.id FROM outcome_markers m
LEFT JOIN goals g ON g.org_id = m.org_id AND g.id = m.goal_id AND g.deleted_at IS NULL
WHERE m.org_id = :org AND m.client_id = :client AND m.deleted_at IS NULL
ORDER BY g.id IS NULL, g.start_date NULLS LAST, g.created_at, m.created_at, m.id
LIMIT 1
""")


async def progress_chart(
    conn: AsyncConnection, who: Principal, client_id: UUID, marker_id: UUID | None = None,
    *, since: datetime | None = None, until: datetime | None = None,
) -> str:
    """Without ``marker_id``, the client's first goal-linked marker (else its first marker)."""
    check_period(since, until)
    await check_client(conn, who, client_id)
    if marker_id is None:
        marker_id = (await conn.execute(DEFAULT_MARKER, {"org": who.org_id, "client": client_id})).scalar()
        if marker_id is None:
            raise NotFound(f"The client {client_id} has no outcome marker to chart")
    marker = await service.fetch(conn, who, REGISTRY["outcome-markers"], marker_id)
    if marker.client_id != client_id:
        raise NotFound(f"No outcome marker with id {marker_id}")
    row = (await conn.execute(CHART_DATA, {
        "org": who.org_id, "client": client_id, "marker": marker_id, "marker_text": str(marker_id),
        "goal": marker.goal_id, "since": since, "until": until,
    })).one()
    points = [(_ts(p["at"]), float(p["value"])) for p in row.points]
    milestones = [(_ts(m["at"]), m["title"], m["status"]) for m in row.milestones]
    return render(dict(marker._mapping), points, milestones, since=since, until=until)


def render(
    marker: dict[str, Any], points: list[tuple[datetime, float]], milestones: list[tuple[datetime, str, str]],
    *, since: datetime | None = None, until: datetime | None = None,
) -> str:
    spec = INSTRUMENTS.get(marker.get("instrument") or "")
    name, unit = marker["name"], (spec.unit if spec else marker.get("unit")) or ""
    if unit.startswith("{") and unit.endswith("}"):  # a UCUM annotation such as {score}: show the word
        unit = unit[1:-1]
    unit = UNIT_WORDS.get(unit, unit)
    # x: the requested range, else the measurements' and milestones' range (a day either side of one point)
    times = [t for t, _ in points] + [at for at, _, _ in milestones]
    t0 = since.astimezone(UTC) if since else (min(times) if times else datetime.now(UTC) - timedelta(days=28))
    t1 = until.astimezone(UTC) if until else (max(times) if times else t0 + timedelta(days=28))
    if t1 <= t0:
        t0, t1 = t0 - timedelta(days=1), t1 + timedelta(days=1)
    elif not (since and until):  # a little room so the first and last points are not cut by the frame
        margin = (t1 - t0) * 0.03
        t0, t1 = (t0 if since else t0 - margin), (t1 if until else t1 + margin)
    values = [v for _, v in points]
    lo = marker.get("min") if marker.get("min") is not None else min(values, default=0.0)
    hi = marker.get("max") if marker.get("max") is not None else max(values, default=1.0)
    if spec is None and values:  # custom markers: fit the data, within the marker's declared range
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
        if marker.get("min") is not None:
            lo = max(lo, marker["min"])
        if marker.get("max") is not None:
            hi = min(hi, marker["max"])
    if hi <= lo:
        hi = lo + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(t: datetime) -> float:
        return round(LEFT + pw * (t - t0).total_seconds() / (t1 - t0).total_seconds(), 1)

    def y(v: float) -> float:
        return round(TOP + ph * (1 - (v - lo) / (hi - lo)), 1)

    direction = "lower is better" if marker.get("direction") == "lower_is_better" else "higher is better"
    unit_text = f" ({unit})" if unit else ""
    title = f"{name}{unit_text} over time"
    desc = (
        f"{len(points)} measurement{'s' if len(points) != 1 else ''} of {name} from {t0.date().isoformat()} to "
        f"{t1.date().isoformat()}; {direction}."
    )
    if points:
        desc += f" First {_fmt(points[0][1])}, latest {_fmt(points[-1][1])}."
    shown = [m for m in milestones if t0 <= m[0] <= t1]
    if shown:
        desc += " Milestones: " + "; ".join(
            f"{t} ({'done' if status == 'done' else 'due'} {at.date().isoformat()})" for at, t, status in shown
        ) + "."

    svg = ET.Element("svg", {
        "xmlns": "http://www.w3.org/2000/svg", "viewBox": f"0 0 {W} {H}", "width": str(W), "height": str(H),
        "role": "img", "aria-labelledby": "chart-title chart-desc", "font-family": "sans-serif", "font-size": "11",
    })
    ET.SubElement(svg, "title", {"id": "chart-title"}).text = title
    ET.SubElement(svg, "desc", {"id": "chart-desc"}).text = desc
    ET.SubElement(svg, "rect", {"x": "0", "y": "0", "width": str(W), "height": str(H), "fill": "#ffffff"})
    ET.SubElement(svg, "text", {"x": str(LEFT), "y": "20", "font-size": "14", "font-weight": "bold"}).text = title

    if spec is not None:  # severity bands from the registry
        bands = ET.SubElement(svg, "g", {"class": "bands", "aria-hidden": "true"})
        for i, band in enumerate(spec.bands):
            top_v = min(band.high + 1, hi) if band.high < spec.max_total else hi
            bottom_v = max(band.low, lo)
            colour = BAND_COLOURS[min(i, len(BAND_COLOURS) - 1)]
            ET.SubElement(bands, "rect", {
                "x": str(LEFT), "y": str(y(top_v)), "width": str(pw), "height": str(round(y(bottom_v) - y(top_v), 1)),
                "fill": colour, "fill-opacity": "0.12", "class": "band",
            })
            ET.SubElement(bands, "text", {"x": str(LEFT + 4), "y": str(y(top_v) + 11), "text-anchor": "start",
                                          "fill": "#555555", "font-size": "9"}).text = band.label.replace("_", " ")

    axes = ET.SubElement(svg, "g", {"class": "axes", "stroke": "#333333"})
    ET.SubElement(axes, "line", {"x1": str(LEFT), "y1": str(TOP), "x2": str(LEFT), "y2": str(TOP + ph)})
    ET.SubElement(axes, "line", {"x1": str(LEFT), "y1": str(TOP + ph), "x2": str(LEFT + pw), "y2": str(TOP + ph)})
    ticks = ET.SubElement(svg, "g", {"class": "ticks", "fill": "#333333"})
    step = _nice_step(hi - lo)
    v = (lo // step) * step
    while v <= hi + 1e-9:
        if v >= lo - 1e-9:
            ET.SubElement(ticks, "text", {"x": str(LEFT - 6), "y": str(y(v) + 4), "text-anchor": "end"}).text = _fmt(v)
            ET.SubElement(ticks, "line", {"x1": str(LEFT - 3), "y1": str(y(v)), "x2": str(LEFT), "y2": str(y(v)),
                                          "stroke": "#333333"})
        v += step
    for frac in (0, 0.5, 1):
        t = t0 + (t1 - t0) * frac
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        ET.SubElement(ticks, "text", {"x": str(x(t)), "y": str(TOP + ph + 16), "text-anchor": anchor}).text = \
            t.date().isoformat()
    ET.SubElement(svg, "text", {"x": str(LEFT + pw / 2), "y": str(H - 10), "text-anchor": "middle",
                                "class": "x-label"}).text = "Date (UTC)"
    ET.SubElement(svg, "text", {"x": "14", "y": str(TOP + ph / 2), "text-anchor": "middle", "class": "y-label",
                                "transform": f"rotate(-90 14 {TOP + ph / 2})"}).text = f"{name}{unit_text}"

    marks = ET.SubElement(svg, "g", {"class": "milestones"})
    for i, (at, title_, status) in enumerate(shown):
        mx = str(x(at))
        attrs = {"x1": mx, "y1": str(TOP), "x2": mx, "y2": str(TOP + ph), "stroke": "#1565c0", "class": "milestone"}
        if status != "done":
            attrs["stroke-dasharray"] = "4 3"
        line = ET.SubElement(marks, "line", attrs)
        ET.SubElement(line, "title").text = f"Milestone: {title_}"
        label = title_ if len(title_) <= 28 else title_[:27] + "…"
        right = x(at) > LEFT + pw * 0.7  # labels near the right edge go to the left of their line
        ET.SubElement(marks, "text", {"x": str(x(at) + (-3 if right else 3)), "y": str(TOP + 10 + 11 * (i % 3)),
                                      "text-anchor": "end" if right else "start", "fill": "#1565c0",
                                      "stroke": "#ffffff", "stroke-width": "3", "paint-order": "stroke",
                                      "font-size": "9"}).text = label

    series = ET.SubElement(svg, "g", {"class": "series"})
    if len(points) > 1:
        ET.SubElement(series, "polyline", {
            "points": " ".join(f"{x(t)},{y(v)}" for t, v in points), "fill": "none", "stroke": "#37474f",
            "stroke-width": "1.5",
        })
    for t, value in points:
        dot = ET.SubElement(series, "circle", {"cx": str(x(t)), "cy": str(y(value)), "r": "3.5", "fill": "#37474f",
                                               "class": "point"})
        ET.SubElement(dot, "title").text = f"{_fmt(value)}{(' ' + unit) if unit else ''} on {t.date().isoformat()}"
    return ET.tostring(svg, encoding="unicode")
