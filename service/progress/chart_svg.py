"""Drawing the progress chart as SVG (see ``chart.py``): a frame of ``Plot`` coordinates, then layers.

Text sizes are 11 px and up; every label is drawn as plain filled text, on an opaque box where it crosses
lines, so that every renderer (browsers, cairo, resvg) shows it the same way.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.instruments import INSTRUMENTS, InstrumentDef
from service.progress.wording import COMPARATORS, UNIT_WORDS, duration, num

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 72, 52
ROW = 18  # a row of milestone labels, in a strip above the values (labels never cover the data)
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
INK, MUTED, MILESTONE, CUT_OFF, TARGET = "#222222", "#555555", "#0d47a1", "#b71c1c", "#1b5e20"
BAND_COLOURS = ("#2e7d32", "#9e9d24", "#f9a825", "#ef6c00", "#c62828")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CHAR_WIDTH = 0.58  # of the font size: a generous average advance for sans-serif text, to size label boxes
Point = tuple[datetime, float]
Milestone = tuple[datetime, str, str]


def short_date(at: datetime, *, year: bool = False) -> str:
    return f"{at.day} {MONTHS[at.month - 1]}" + (f" {at.year}" if year else "")


@dataclass(frozen=True)
class Plot:
    t0: datetime
    t1: datetime
    lo: float
    hi: float
    top: float = TOP  # the values' area starts here: below the milestone labels' strip

    @property
    def width(self) -> int:
        return W - LEFT - RIGHT

    @property
    def height(self) -> float:
        return H - self.top - BOTTOM

    def x(self, t: datetime) -> float:
        return round(LEFT + self.width * (t - self.t0).total_seconds() / (self.t1 - self.t0).total_seconds(), 1)

    def y(self, v: float) -> float:
        return round(self.top + self.height * (1 - (v - self.lo) / (self.hi - self.lo)), 1)


def _time_range(points: list[Point], milestones: list[Milestone], since: datetime | None,
                until: datetime | None) -> tuple[datetime, datetime]:
    """The requested range, else the measurements' and milestones' range (a day either side of one point)."""
    times = [t for t, _ in points] + [at for at, _, _ in milestones]
    t0 = since.astimezone(UTC) if since else (min(times) if times else datetime.now(UTC) - timedelta(days=28))
    t1 = until.astimezone(UTC) if until else (max(times) if times else t0 + timedelta(days=28))
    if t1 <= t0:
        return t0 - timedelta(days=1), t1 + timedelta(days=1)
    if not (since and until):  # a little room so the first and last points are not cut by the frame
        margin = (t1 - t0) * 0.03
        t0, t1 = (t0 if since else t0 - margin), (t1 if until else t1 + margin)
    return t0, t1


def _value_range(marker: dict[str, Any], spec: InstrumentDef | None, values: list[float],
                 target: float | None) -> tuple[float, float]:
    lo: float = marker["min"] if marker.get("min") is not None else min(values, default=0.0)
    hi: float = marker["max"] if marker.get("max") is not None else max(values, default=1.0)
    if spec is None and values:  # custom markers: fit the data (and the target), within the declared range
        seen = values + ([target] if target is not None else [])
        lo, hi = min(seen), max(seen)
        pad = (hi - lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
        if marker.get("min") is not None:
            lo = max(lo, marker["min"])
        if marker.get("max") is not None:
            hi = min(hi, marker["max"])
    return (lo, hi) if hi > lo else (lo, lo + 1)


def _text(parent: ET.Element, x: float, y: float, content: str, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, "text", {"x": str(round(x, 1)), "y": str(round(y, 1)), **attrs})
    node.text = content
    return node


def _boxed_label(parent: ET.Element, x: float, y: float, content: str, colour: str, css: str, *,
                 anchor: str = "start", size: int = 12) -> None:
    """Text on an opaque white box (the box first, then the text over it)."""
    width = len(content) * size * CHAR_WIDTH + 6
    left = x - 3 if anchor == "start" else x - width + 3
    ET.SubElement(parent, "rect", {"x": str(round(left, 1)), "y": str(round(y - size, 1)),
                                   "width": str(round(width, 1)), "height": str(size + 4), "fill": "#ffffff",
                                   "class": f"{css}-bg"})
    _text(parent, x, y, content, fill=colour, **{"font-size": str(size), "text-anchor": anchor, "class": css})


def _bands(svg: ET.Element, plot: Plot, spec: InstrumentDef) -> None:
    bands = ET.SubElement(svg, "g", {"class": "bands", "aria-hidden": "true"})
    for i, band in enumerate(spec.bands):
        top_v = min(band.high + 1, plot.hi) if band.high < spec.max_total else plot.hi
        bottom_v = max(band.low, plot.lo)
        ET.SubElement(bands, "rect", {
            "x": str(LEFT), "y": str(plot.y(top_v)), "width": str(plot.width),
            "height": str(round(plot.y(bottom_v) - plot.y(top_v), 1)),
            "fill": BAND_COLOURS[min(i, len(BAND_COLOURS) - 1)], "fill-opacity": "0.12", "class": "band",
        })
        _text(bands, plot.x(plot.t1) - 4, plot.y(top_v) + 13, band.label.replace("_", " "), fill=MUTED,
              **{"font-size": "11", "text-anchor": "end"})


def _reference_line(svg: ET.Element, plot: Plot, value: float, colour: str, label: str, css: str) -> None:
    if not plot.lo <= value <= plot.hi:
        return
    group = ET.SubElement(svg, "g", {"class": css})
    y = plot.y(value)
    ET.SubElement(group, "line", {"x1": str(LEFT), "y1": str(y), "x2": str(LEFT + plot.width), "y2": str(y),
                                  "stroke": colour, "stroke-width": "1.5", "stroke-dasharray": "6 4"})
    _boxed_label(group, LEFT + 6, y - 6, label, colour, f"{css}-label")  # the box ends 2 px above the line


def _axes(svg: ET.Element, plot: Plot, axis_label: str) -> None:
    axes = ET.SubElement(svg, "g", {"class": "axes", "stroke": INK})
    bottom = H - BOTTOM
    ET.SubElement(axes, "line", {"x1": str(LEFT), "y1": str(plot.top), "x2": str(LEFT), "y2": str(bottom)})
    ET.SubElement(axes, "line", {"x1": str(LEFT), "y1": str(bottom), "x2": str(LEFT + plot.width),
                                 "y2": str(bottom)})
    ticks = ET.SubElement(svg, "g", {"class": "ticks", "fill": INK, "font-size": "12"})
    step = _nice_step(plot.hi - plot.lo)
    v = (plot.lo // step) * step
    while v <= plot.hi + 1e-9:
        if v >= plot.lo - 1e-9:
            _text(ticks, LEFT - 6, plot.y(v) + 4, num(v), **{"text-anchor": "end"})
            ET.SubElement(ticks, "line", {"x1": str(LEFT - 3), "y1": str(plot.y(v)), "x2": str(LEFT),
                                          "y2": str(plot.y(v)), "stroke": INK})
        v += step
    for frac, anchor in ((0, "start"), (0.5, "middle"), (1, "end")):
        t = plot.t0 + (plot.t1 - plot.t0) * frac
        _text(ticks, plot.x(t), H - BOTTOM + 17, short_date(t, year=True), **{"text-anchor": anchor})
    _text(svg, LEFT + plot.width / 2, H - 10, "Date (UTC)", fill=INK,
          **{"text-anchor": "middle", "class": "x-label", "font-size": "12"})
    middle = plot.top + plot.height / 2
    _text(svg, 16, middle, axis_label, fill=INK, **{
        "text-anchor": "middle", "class": "y-label", "font-size": "12", "transform": f"rotate(-90 16 {middle})"})


def _nice_step(span: float) -> float:
    raw = span / 6 or 1
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def _milestones(svg: ET.Element, plot: Plot, shown: list[Milestone]) -> None:
    marks = ET.SubElement(svg, "g", {"class": "milestones"})
    for at, title, status in shown:
        mx = str(plot.x(at))
        attrs = {"x1": mx, "y1": str(TOP), "x2": mx, "y2": str(H - BOTTOM), "stroke": MILESTONE,
                 "stroke-width": "1.5", "class": "milestone"}
        if status != "done":
            attrs["stroke-dasharray"] = "4 3"
        line = ET.SubElement(marks, "line", attrs)
        ET.SubElement(line, "title").text = f"Milestone: {title}"
    for i, (at, title, _status) in enumerate(shown):  # labels over every line
        label = title if len(title) <= 28 else title[:27] + "…"
        right = plot.x(at) > LEFT + plot.width * 0.6  # labels near the right edge go to the left of their line
        _boxed_label(marks, plot.x(at) + (-4 if right else 4), TOP + 14 + ROW * (i % 3), label, MILESTONE,
                     "milestone-label", anchor="end" if right else "start")


def _series(svg: ET.Element, plot: Plot, points: list[Point], unit: str) -> None:
    series = ET.SubElement(svg, "g", {"class": "series"})
    if len(points) > 1:
        ET.SubElement(series, "polyline", {
            "points": " ".join(f"{plot.x(t)},{plot.y(v)}" for t, v in points), "fill": "none", "stroke": "#37474f",
            "stroke-width": "2",
        })
    for t, value in points:
        dot = ET.SubElement(series, "circle", {"cx": str(plot.x(t)), "cy": str(plot.y(value)), "r": "4",
                                               "fill": "#37474f", "class": "point"})
        ET.SubElement(dot, "title").text = f"{num(value)}{(' ' + unit) if unit else ''} on {t.date().isoformat()}"


def _direction_cue(svg: ET.Element, lower_is_better: bool) -> None:
    """An arrow and the words, top right: which way is better."""
    cue = ET.SubElement(svg, "g", {"class": "direction", "fill": INK})
    x, y = W - RIGHT - 5, TOP - 12
    _text(cue, x - 10, y, "lower is better" if lower_is_better else "higher is better",
          **{"text-anchor": "end", "font-size": "12"})
    if lower_is_better:  # shaft, then the head pointing down
        shaft, head = (y - 11, y - 4), f"{x - 4},{y - 5} {x + 4},{y - 5} {x},{y + 1}"
    else:
        shaft, head = (y - 5, y + 1), f"{x - 4},{y - 5} {x + 4},{y - 5} {x},{y - 11}"
    ET.SubElement(cue, "rect", {"x": str(x - 1), "y": str(shaft[0]), "width": "2", "height": str(shaft[1] - shaft[0])})
    ET.SubElement(cue, "polygon", {"points": head})


def caption(name: str, unit: str, spec: InstrumentDef | None, points: list[Point],
            target: dict[str, Any] | None) -> str:
    """The course in one plain sentence, from the first to the latest point shown."""
    if not points:
        return "No measurements in this range."
    (t_first, first), (t_last, last) = points[0], points[-1]
    amount = f" {unit}" if unit and not spec else (" points" if spec else "")
    if len(points) == 1:
        head = f"One measurement: {num(last)}{' ' + unit if unit and not spec else ''} on {short_date(t_last)}"
    elif last == first:
        head = f"No change since {short_date(t_first)}"
    else:
        head = f"{'Down' if last < first else 'Up'} {num(abs(last - first))}{amount} since {short_date(t_first)}"
    if spec is not None:
        where = "at or above the clinical cut-off" if spec.is_case(last) else "below the clinical cut-off"
        if len(points) > 1:
            where = ("now " if spec.is_case(first) != spec.is_case(last) else "still ") + where
        return f"{head}: {where}."
    if target is not None:
        meets = _meets(last, target)
        goal = f"{COMPARATORS.get(target['comparator'], target['comparator'])} {num(target['value'])}"
        return f"{head}: {'meets' if meets else 'not yet at'} the target ({goal})."
    return f"{head}."


def _meets(value: float, target: dict[str, Any]) -> bool:
    tv = float(target["value"])
    return {">=": value >= tv, "<=": value <= tv, ">": value > tv, "<": value < tv, "=": value == tv}.get(
        target["comparator"], False)


def render(
    marker: dict[str, Any], points: list[Point], milestones: list[Milestone], *, target: dict[str, Any] | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> str:
    spec = INSTRUMENTS.get(marker.get("instrument") or "")
    name = spec.display_name if spec else marker["name"]
    unit = (spec.unit if spec else marker.get("unit")) or ""
    unit = UNIT_WORDS.get(unit, unit[1:-1] if unit.startswith("{") and unit.endswith("}") else unit)
    t0, t1 = _time_range(points, milestones, since, until)
    target_value = float(target["value"]) if target else None
    shown = [m for m in milestones if t0 <= m[0] <= t1]
    strip = ROW * min(3, len(shown)) + (4 if shown else 0)
    plot = Plot(t0, t1, *_value_range(marker, spec, [v for _, v in points], target_value), top=TOP + strip)
    lower_is_better = marker.get("direction") == "lower_is_better"
    title = name if spec else f"{name}{f' ({unit})' if unit else ''}"
    said = caption(name, unit, spec, points, target)

    svg = ET.Element("svg", {
        "xmlns": "http://www.w3.org/2000/svg", "viewBox": f"0 0 {W} {H}", "width": str(W), "height": str(H),
        "role": "img", "aria-labelledby": "chart-title chart-desc", "font-family": FONT, "font-size": "12",
    })
    ET.SubElement(svg, "title", {"id": "chart-title"}).text = f"{title} over time"
    ET.SubElement(svg, "desc", {"id": "chart-desc"}).text = _description(name, points, shown, t0, t1, said,
                                                                         lower_is_better)
    ET.SubElement(svg, "rect", {"x": "0", "y": "0", "width": str(W), "height": str(H), "fill": "#ffffff"})
    _text(svg, LEFT, 22, f"{title} over time", fill=INK, **{"font-size": "15", "font-weight": "bold"})
    _text(svg, LEFT, 44, said, fill=INK, **{"font-size": "13", "class": "caption"})
    _direction_cue(svg, lower_is_better)
    if spec is not None:
        _bands(svg, plot, spec)
    _axes(svg, plot, name if spec else title)
    if spec is not None:
        _reference_line(svg, plot, spec.caseness, CUT_OFF, f"clinical cut-off ({num(spec.caseness)})", "cut-off")
    if target is not None and target_value is not None:
        per = f" per {duration(target['period'])}" if target.get("period") else ""
        words = f"target: {COMPARATORS.get(target['comparator'], target['comparator'])} {num(target_value)}{per}"
        _reference_line(svg, plot, target_value, TARGET, words, "target")
    _series(svg, plot, points, unit)
    _milestones(svg, plot, shown)
    return ET.tostring(svg, encoding="unicode")


def _description(name: str, points: list[Point], shown: list[Milestone], t0: datetime, t1: datetime,
                 said: str, lower_is_better: bool) -> str:
    direction = "lower is better" if lower_is_better else "higher is better"
    desc = (f"{len(points)} measurement{'s' if len(points) != 1 else ''} of {name} from {t0.date().isoformat()} "
            f"to {t1.date().isoformat()}; {direction}. {said}")
    if points:
        desc += f" First {num(points[0][1])}, latest {num(points[-1][1])}."
    if shown:
        desc += " Milestones: " + "; ".join(
            f"{t} ({'done' if status == 'done' else 'due'} {at.date().isoformat()})" for at, t, status in shown
        ) + "."
    return desc
