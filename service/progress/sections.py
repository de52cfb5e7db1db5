"""The clinical summary's sections, each a list of lines built from the progress and the record."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from service.domain.instruments import INSTRUMENTS
from service.progress.hints import behavioural
from service.progress.schemas import ClientProgress, GoalProgress
from service.progress.wording import (
    LABEL_WORDS,
    day,
    num,
    plural,
    quoted,
    score,
    sentence,
    strength_name,
    target_text,
    unit_words,
    verb_phrase,
    window_course,
)


def _symptom_line(s: dict[str, Any], label: str | None) -> str:
    spec = INSTRUMENTS[s["instrument"]]
    line = f"{spec.name} {score(s['latest'], s['latest_band'])} on {day(s['latest_at'])}"
    if s["n"] > 1:
        line += (f"; first {score(s['first'], s['first_band'])} on {day(s['first_at'])}, "
                 f"{plural(s['n'], 'measurement')}: {LABEL_WORDS[label or 'insufficient_data']}")
    else:
        line += f"; {LABEL_WORDS['insufficient_data']}"
    if not s["recent"]:
        line += "; not repeated in the last 4 weeks"
    return sentence(line)


def _strength_line(s: dict[str, Any]) -> str:
    line = f"{s['label']}, {s['domain']} {s['kind'].replace('_', ' ')}"
    if behavioural(s["description"], s["label"]):
        line += f": client {verb_phrase(s['description'])}"
    if s["context"]:
        line += f"; where: {' '.join(s['context'].split()).rstrip('.')}"
    if s["under_stress"]:
        line += "; also shows up under stress"
    if s["evidence"]:
        line += f"; {plural(len(s['evidence']), 'lived example')} recorded"
    if s["client_label"]:
        line += f"; in the client's words {quoted(s['client_label'])}"
    return sentence(line)


def assessment_lines(preferred_future: str | None, prog: ClientProgress, record: dict[str, Any]) -> list[str]:
    labels = {"phq9": prog.recovery.phq9, "gad7": prog.recovery.gad7}
    symptoms = record["symptoms"]
    confirmed = [s for s in record["strengths"] if s["status"] == "confirmed"]
    possible = [s for s in record["strengths"] if s["status"] == "hypothesis"]
    scores = ", ".join(f"{INSTRUMENTS[s['instrument']].name} {score(s['latest'], s['latest_band'])}" for s in symptoms)
    opening = f"Latest symptom scores: {scores}" if scores else "No symptom measure (PHQ-9, GAD-7) recorded"
    if confirmed:
        opening += ", alongside identified strengths in " + ", ".join(s["label"] for s in confirmed)
    lines = [sentence(opening)]
    lines += [_symptom_line(s, labels.get(s["instrument"])) for s in symptoms]
    if len(symptoms) > 1 or prog.recovery.status != "insufficient_data":
        lines.append(sentence(f"Recovery across PHQ-9 and GAD-7: {prog.recovery.status.replace('_', ' ')}"))
    if preferred_future:
        lines.append(f"Preferred future, in the client's words: {quoted(preferred_future)}")
    lines += [f"Identified strength: {_strength_line(s)}" for s in confirmed]
    lines += [f"Possible strength (to confirm with a lived example): {_strength_line(s)}" for s in possible]
    for p in record["protective"]:
        lines.append(sentence(f"Protective factor ({p['category'].replace('_', ' ')}, "
                              f"{p['status'].replace('_', ' ')}): {p['description']}"))
    for e in record["exceptions"]:
        conditions = ", ".join(c.replace("_", " ") for c in e["conditions"])
        lines.append(sentence(f"Exception to {quoted(e['problem'].strip())}: {verb_phrase(e['description'])}"
                              + (f" (conditions: {conditions})" if conditions else "")))
    return lines


def _goal_line(g: GoalProgress, strengths: dict[Any, dict[str, Any]]) -> str:
    line = sentence(f"{g.description} ({g.lifecycle.replace('_', ' ')})")
    if g.strengths:
        line += " Builds on " + ", ".join(strength_name(strengths.get(s.id, {"label": s.label, "status": s.status}))
                                          for s in g.strengths) + "."
    if g.target:
        marker = next((m.model_dump() for m in g.markers if str(m.marker_id) == str(g.target.get("marker_id"))),
                      g.markers[0].model_dump() if len(g.markers) == 1 else None)
        met = {True: "met", False: "not met yet", None: "cannot be evaluated yet"}[g.target_met]
        line += f" Target: {target_text(g.target, marker)} ({met})."
    for m in g.markers:
        if m.latest is not None and m.baseline_at is not None:
            unit = unit_words(m.unit, m.instrument)
            line += (f" {m.name}: latest {score(m.latest, m.latest_band)}{unit} on {day(m.last_measured)}; since the "
                     f"baseline of {score(m.baseline, m.baseline_band)} on {day(m.baseline_at)}: "
                     f"{LABEL_WORDS[m.label] if m.label else _course(m.improvement or 0, m.change or 0, unit)}.")
    line += f" Milestones: {g.milestones_done} of {g.milestones_total} done."
    if g.off_track:
        line += " Off track: not better than 4 weeks ago by the minimal meaningful change; review the plan."
    if g.stale and g.lifecycle == "active":
        line += " Not measured in the last 4 weeks."
    return line


def _course(improvement: float, change: float, unit: str) -> str:
    if improvement == 0:
        return "no change"
    return f"{'better' if improvement > 0 else 'worse'} by {num(abs(change))}{unit}"


def goal_lines(prog: ClientProgress, record: dict[str, Any]) -> list[str]:
    strengths = {s["id"]: s for s in record["strengths"]}
    return [_goal_line(g, strengths) for g in prog.goals] or ["No goals recorded yet."]


def progress_lines(since: date | datetime, record: dict[str, Any]) -> list[str]:
    lines = []
    for s in record["strengths"]:
        uses = s["uses"]
        if uses:
            first = uses[0]
            example = quoted(first["situation"]) + (f", result: {quoted(first['result'])}" if first["result"] else "")
            lines.append(f"Client applied {strength_name(s)} in {plural(len(uses), 'situation')} since "
                         f"{since.isoformat()} (for example {example}).")
    strengths = {s["id"]: s for s in record["strengths"]}
    for x in record["experiments"]:
        s = strengths.get(x["strength_id"])
        used = strength_name(s) if s else "a strength"
        line = f"Experiment using {used}: {quoted(x['plan'])}; done {day(x['done_at'])}"
        if x["result"]:
            line += f"; result: {quoted(x['result'])}"
        if x["confidence_before"] is not None and x["confidence_after"] is not None:
            line += f"; confidence {x['confidence_before']} to {x['confidence_after']} of 10"
        if x["debrief"]:
            line += f"; what the client learned: {quoted(x['debrief'])}"
        lines.append(line + ".")
    lines += [f"Milestone reached: {quoted(m['title'])} on {m['completed_on']}."
              for m in record["milestones"] if m["status"] == "done" and m["completed_in_window"]]
    lines += [window_course(r) for r in record["window_readings"]]
    return lines or [f"No strength uses, experiments, milestones or measurements recorded since {since.isoformat()}."]


def plan_lines(prog: ClientProgress, record: dict[str, Any]) -> list[str]:
    lines = []
    strengths = {s["id"]: s for s in record["strengths"]}
    for g in prog.goals:
        if g.lifecycle != "active":
            continue
        if g.next_milestone:
            nxt = g.next_milestone
            due = f", due {nxt.due_date.isoformat()}" if nxt.due_date else ""
            lines.append(f"Next milestone for {quoted(g.description)}: {quoted(nxt.title)}{due} (done when: "
                         f"{verb_phrase(nxt.completion_criteria)}).")
        if g.off_track:
            lines.append(f"Review {quoted(g.description)} with the client: off track (not better than 4 weeks ago "
                         "by the minimal meaningful change).")
        if g.barriers:
            lines.append(f"Barriers to {quoted(g.description)}: " + "; ".join(b.strip().rstrip(".")
                                                                               for b in g.barriers) + ".")
    for x in record["planned_experiments"]:
        s = strengths.get(x["strength_id"])
        due = f", due {x['due_date']}" if x["due_date"] else ""
        lines.append(f"Planned experiment using {strength_name(s) if s else 'a strength'}: {quoted(x['plan'])}{due}.")
    for s in record["symptoms"]:
        if not s["recent"]:
            lines.append(f"Repeat the {INSTRUMENTS[s['instrument']].name} (last on {day(s['latest_at'])}).")
    return lines or ["No next steps recorded: agree the next milestone or a small experiment with the client."]
