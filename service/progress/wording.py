"""How the clinical summary says things: numbers, units, targets, courses of readings, and the quality hints.

Plain functions of data, so the same data always reads the same way.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from service.domain.instruments import INSTRUMENTS

COMPARATORS = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than", "=": "exactly"}
UNIT_WORDS = {"/wk": "per week", "/d": "per day", "/mo": "per month", "/h": "per hour"}
DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")
BAND_WORDS = {"minimal": "minimal", "mild": "mild", "moderate": "moderate", "moderately_severe": "moderately severe",
              "severe": "severe"}
LABEL_WORDS = {
    "recovered": "recovered (a reliable improvement from at or above the clinical cut-off to below it)",
    "reliably_improved": "a reliable improvement",
    "no_reliable_change": "no reliable change",
    "reliably_deteriorated": "a reliable deterioration",
    "insufficient_data": "one measurement so far, no change to judge yet",
}


def num(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def quoted(value: str) -> str:
    return "\u201c" + " ".join(value.split()) + "\u201d"


def day(value: datetime | date | str | None) -> str:
    if value is None:
        return "?"
    if isinstance(value, str):
        return value[:10]
    return (value.date() if isinstance(value, datetime) else value).isoformat()


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def verb_phrase(description: str) -> str:
    """'Asks a friend...' -> 'asks a friend...', to follow 'client'; acronyms keep their case."""
    d = " ".join(description.split()).rstrip(".")
    return d[0].lower() + d[1:] if len(d) > 1 and d[0].isupper() and not d[1].isupper() else d


def sentence(text: str) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text + "."


def duration(value: str) -> str:
    """ISO 8601 durations in words: P1W -> 'week' (as in 'per week'), P4W -> '4 weeks'."""
    m = DURATION.match(value or "")
    if not m:
        return value
    parts = [f"{int(n)} {unit}{'s' if int(n) != 1 else ''}"
             for n, unit in zip(m.groups(), ("year", "month", "week", "day"), strict=True) if n and int(n)]
    return ", ".join(parts).removeprefix("1 ") if len(parts) == 1 else ", ".join(parts)


def unit_words(unit: str | None, instrument: str | None) -> str:
    if not unit or instrument or unit.startswith("{"):
        return ""
    return " " + UNIT_WORDS.get(unit, unit)


def measure_name(name: str, instrument: str | None) -> str:
    return INSTRUMENTS[instrument].name if instrument in INSTRUMENTS else name


def score(value: float | None, band: str | None) -> str:
    return f"{num(value)} ({BAND_WORDS.get(band or '', band)})" if band else num(value)


def strength_name(s: dict[str, Any]) -> str:
    kind = "identified strength" if s["status"] == "confirmed" else "possible strength"
    return f"{s['label']} ({kind})"


def target_text(target: dict[str, Any], marker: dict[str, Any] | None) -> str:
    what = marker["name"] if marker else "the target marker"
    unit = unit_words(marker["unit"], marker["instrument"]) if marker and not target.get("period") else ""
    period = f" per {duration(target['period'])}" if target.get("period") else ""
    held = f", held for {duration(target['duration'])}" if target.get("duration") else ""
    comparator = COMPARATORS.get(target["comparator"], target["comparator"])
    return f"{what}: {comparator} {num(target['value'])}{unit}{period}{held}"


def window_course(r: dict[str, Any]) -> str:
    """One marker's readings inside the summary's window (first and last of them), in words."""
    name, unit = measure_name(r["name"], r["instrument"]), unit_words(r["unit"], r["instrument"])
    if r["n"] == 1:
        return f"{name} {score(r['last'], r['last_band'])}{unit} on {day(r['last_at'])} (one reading in this period)."
    change = r["last"] - r["first"]
    improvement = change if r["direction"] == "higher_is_better" else -change
    move = (f"{name} stayed at {score(r['last'], r['last_band'])}{unit}" if change == 0 else
            f"{name} {'rose' if change > 0 else 'fell'} from {score(r['first'], r['first_band'])} on "
            f"{day(r['first_at'])} to {score(r['last'], r['last_band'])}{unit} on {day(r['last_at'])}")
    return f"{move} ({plural(r['n'], 'reading')} in this period): {_verdict(r, improvement)}."


def _verdict(r: dict[str, Any], improvement: float) -> str:
    spec = INSTRUMENTS.get(r["instrument"] or "")
    if spec is not None:
        if improvement >= spec.reliable_change:
            crossed = spec.is_case(r["first"]) and not spec.is_case(r["last"])
            return (f"a reliable improvement ({num(spec.reliable_change)} points or more)"
                    + (f", now below the clinical cut-off of {num(spec.caseness)}" if crossed else ""))
        if improvement <= -spec.reliable_change:
            return f"a reliable deterioration ({num(spec.reliable_change)} points or more); review the plan"
        return f"not a reliable change (under {num(spec.reliable_change)} points)"
    if improvement == 0:
        return "no change"
    if improvement < 0:
        return "a change in the unwanted direction"
    minimal = r["min_change"]
    if minimal is not None and improvement < minimal:
        return f"an improvement smaller than the marker's minimal meaningful change ({num(minimal)})"
    return "a meaningful improvement"
