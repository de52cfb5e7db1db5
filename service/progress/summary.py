"""A deterministic, strengths-based clinical summary: Assessment, Goals and Progress in behavioural
language, plus hints where the record falls short of good practice.

Deterministic: the same data (and the same ``since``) gives the same text; the only time in it is
``since``. Four statements: the client, the progress statement, one for the rest of the record, and the
unresolved safety alerts (read as every alert list reads them).
(``since`` filters strength uses by ``occurred_at``, milestones by ``completed_at`` and done experiments by
their last change, ``updated_at``: experiments have no completion time of their own.)
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.domain.instruments import INSTRUMENTS
from service.domain.safety import alert_line, unresolved_alerts
from service.progress import service as progress
from service.progress.schemas import ClinicalSummary, GoalProgress, MarkerProgress, QualityHint, SummarySection

RECORD = text("""
SELECT
  (SELECT coalesce(json_agg(json_build_object(
      'id', s.id, 'label', s.label, 'client_label', s.client_label, 'description', s.description,
      'context', s.context, 'under_stress', s.under_stress, 'status', s.status, 'kind', s.kind,
      'domain', s.domain, 'evidence', s.evidence,
      'uses_total', (SELECT count(*) FROM strength_uses u WHERE u.org_id = :org AND u.strength_id = s.id
                     AND u.deleted_at IS NULL),
      'uses', (SELECT coalesce(json_agg(json_build_object('situation', u.situation, 'result', u.result)
                                        ORDER BY u.occurred_at, u.id), '[]'::json)
               FROM strength_uses u WHERE u.org_id = :org AND u.strength_id = s.id AND u.deleted_at IS NULL
                 AND u.occurred_at >= :since))
    ORDER BY CASE s.status WHEN 'confirmed' THEN 0 WHEN 'hypothesis' THEN 1 ELSE 2 END, s.label, s.id), '[]'::json)
   FROM strengths s WHERE s.org_id = :org AND s.client_id = :client AND s.deleted_at IS NULL) AS strengths,
  (SELECT coalesce(json_agg(json_build_object(
      'id', x.id, 'strength_id', x.strength_id, 'plan', x.plan, 'result', x.result, 'debrief', x.debrief,
      'confidence_before', x.confidence_before, 'confidence_after', x.confidence_after)
    ORDER BY x.updated_at, x.id), '[]'::json)
   FROM experiments x WHERE x.org_id = :org AND x.client_id = :client AND x.deleted_at IS NULL
     AND x.status = 'done' AND x.updated_at >= :since) AS experiments,
  (SELECT coalesce(json_agg(json_build_object(
      'id', m.id, 'goal_id', m.goal_id, 'title', m.title, 'criteria', m.completion_criteria, 'status', m.status,
      'completed_on', CAST(m.completed_at AS date), 'completed_since', m.completed_at >= :since)
    ORDER BY m.goal_id, m.sequence NULLS LAST, m.id), '[]'::json)
   FROM milestones m WHERE m.org_id = :org AND m.client_id = :client AND m.deleted_at IS NULL) AS milestones,
  (SELECT coalesce(json_agg(json_build_object('category', p.category, 'description', p.description,
                                              'status', p.status) ORDER BY p.category, p.id), '[]'::json)
   FROM protective_factors p WHERE p.org_id = :org AND p.client_id = :client AND p.deleted_at IS NULL) AS protective,
  (SELECT coalesce(json_agg(json_build_object('problem', e.problem, 'description', e.description,
                                              'conditions', e.conditions) ORDER BY e.observed_at, e.id), '[]'::json)
   FROM exceptions e WHERE e.org_id = :org AND e.client_id = :client AND e.deleted_at IS NULL) AS exceptions
""")

# Words that name a state or a trait rather than something another person could see the client do.
VAGUE = re.compile(
    r"\b(feel|feels|feeling|better|understand|understands|aware|awareness|confident|confidence|improve|improved|"
    r"happier|happy|motivated|cope|coping|know|knows|realise|realize|ok|okay|good)\b", re.IGNORECASE,
)


def _n(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def _q(value: str) -> str:
    return "\u201c" + " ".join(value.split()) + "\u201d"


def _verb_phrase(description: str) -> str:
    """'Asks a friend...' -> 'asks a friend...', to follow 'client'; acronyms keep their case."""
    d = " ".join(description.split()).rstrip(".")
    return d[0].lower() + d[1:] if len(d) > 1 and d[0].isupper() and not d[1].isupper() else d


COMPARATORS = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than", "=": "exactly"}
UNIT_WORDS = {"/wk": "per week", "/d": "per day", "/mo": "per month", "/h": "per hour"}
DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


def _duration(value: str) -> str:
    """ISO 8601 durations in words: P1W -> 'week' (as in 'per week'), P4W -> '4 weeks'."""
    m = DURATION.match(value or "")
    if not m:
        return value
    parts = [f"{int(n)} {unit}{'s' if int(n) != 1 else ''}"
             for n, unit in zip(m.groups(), ("year", "month", "week", "day"), strict=True) if n and int(n)]
    return ", ".join(parts).removeprefix("1 ") if len(parts) == 1 else ", ".join(parts)


def _unit(unit: str | None, instrument: str | None) -> str:
    if not unit or instrument or unit.startswith("{"):
        return ""
    return " " + UNIT_WORDS.get(unit, unit)


def _strength_name(s: dict[str, Any]) -> str:
    kind = "identified strength" if s["status"] == "confirmed" else "possible strength"
    return f"{s['label']} ({kind})"


FILLER = {"is", "are", "very", "really", "quite", "so", "a", "an", "the", "and", "person", "client", "she", "he",
          "they", "always", "generally", "usually", "often", "extremely", "highly", "pretty"}


def _behavioural(description: str | None, label: str) -> bool:
    """Says what the client does: more than a trait label ('motivated', 'is very motivated', 'kind and caring')."""
    d = (description or "").strip()
    words = [w for w in re.findall(r"[a-z0-9'-]+", d.lower()) if w not in FILLER]
    return len(words) >= 3 and d.lower() != label.strip().lower()


def _observable(criteria: str | None) -> bool:
    c = (criteria or "").strip()
    if len(c.split()) < 4:
        return False
    return not (VAGUE.search(c) and not re.search(r"\d|\b(once|twice|two|three|four|five|six|seven|days?|times?)\b",
                                                    c, re.IGNORECASE))


def quality_hints(record: dict[str, Any], goals: list[GoalProgress]) -> list[QualityHint]:
    hints: list[QualityHint] = []
    for s in record["strengths"]:
        if s["status"] == "retired":
            continue
        if not _behavioural(s["description"], s["label"]):
            hints.append(QualityHint(
                code="strength_not_behavioural", record_type="strength", record_id=s["id"],
                message=f"Strength {_q(s['label'])} is described only by a trait label; describe what the client "
                        "does, where and when (a behavioural description).",
            ))
        if s["status"] == "hypothesis" and not s["evidence"] and not s["uses_total"]:
            hints.append(QualityHint(
                code="hypothesis_without_evidence", record_type="strength", record_id=s["id"],
                message=f"Strength {_q(s['label'])} is still a hypothesis with no lived example; record one "
                        "(evidence or a strength use) or explore it with the client.",
            ))
    for g in goals:
        if not g.target:
            hints.append(QualityHint(
                code="goal_without_target", record_type="goal", record_id=g.goal_id,
                message=f"Goal {_q(g.description)} has no behavioural target (marker, comparator, value, period).",
            ))
    for m in record["milestones"]:
        if not _observable(m["criteria"]):
            hints.append(QualityHint(
                code="milestone_not_observable", record_type="milestone", record_id=m["id"],
                message=f"Milestone {_q(m['title'])} has completion criteria that are not observable "
                        f"({_q(m['criteria'] or '')}); say what someone could see or count.",
            ))
    return hints


def _marker_sentence(m: MarkerProgress) -> str | None:
    if m.baseline is None or m.latest is None:
        return None
    unit = _unit(m.unit, m.instrument)
    name = INSTRUMENTS[m.instrument].name if m.instrument in INSTRUMENTS else m.name
    when = m.last_measured.date().isoformat() if m.last_measured else "?"
    if m.measurement_count == 1:
        return f"{name} measured once so far: {_n(m.latest)}{unit} on {when}; no change to judge yet."
    if m.change == 0:
        move = f"{name} stayed at {_n(m.latest)}{unit}"
    else:
        verb = "fell" if (m.change or 0) < 0 else "rose"
        move = f"{name} {verb} from {_n(m.baseline)} to {_n(m.latest)}{unit}"
    if m.label is not None:
        verdict = {
            "recovered": f"a reliable improvement (RCI {_n(m.rci)}), now below the clinical cut-off of "
                         f"{_n(m.caseness)} (recovered)",
            "reliably_improved": f"a reliable improvement (RCI {_n(m.rci)})",
            "no_reliable_change": f"not a reliable change (RCI {_n(m.rci)})",
            "reliably_deteriorated": f"a reliable deterioration (RCI {_n(m.rci)}); review the plan",
        }[m.label]
    elif (m.improvement or 0) > 0:
        verdict = "an improvement"
    elif (m.improvement or 0) < 0:
        verdict = "a change in the unwanted direction"
    else:
        verdict = "no change"
    count = f"{m.measurement_count} measurement{'s' if m.measurement_count != 1 else ''}"
    return f"{move}, {verdict} ({count}, last on {when})."


def _target_text(target: dict[str, Any], markers: list[MarkerProgress]) -> str:
    names = {str(m.marker_id): m for m in markers}
    marker = names.get(str(target.get("marker_id")))
    what = marker.name if marker else "the target marker"
    unit = _unit(marker.unit, marker.instrument) if marker and not target.get("period") else ""
    period = f" per {_duration(target['period'])}" if target.get("period") else ""
    duration = f", held for {_duration(target['duration'])}" if target.get("duration") else ""
    comparator = COMPARATORS.get(target["comparator"], target["comparator"])
    return f"{what}: {comparator} {_n(target['value'])}{unit}{period}{duration}"


async def _safety_section(conn: AsyncConnection, who: Principal, client_id: UUID) -> SummarySection | None:
    """Safety first: every open or acknowledged alert, urgent first then oldest, told from its immutable trigger,
    severity and observed_at (service.domain.safety), never from text anyone can edit."""
    alerts = await unresolved_alerts(conn, who, client_id)
    if not alerts:
        return None
    n = len(alerts)
    return SummarySection(title="Safety", lines=[
        f"{n} unresolved safety alert{'s' if n != 1 else ''}: review before anything else and update the safety plan.",
        *(alert_line(a) for a in alerts),
    ])


async def clinical_summary(
    conn: AsyncConnection, who: Principal, client_id: UUID, *, since: date | None = None,
    off_track_days: int = progress.DEFAULT_OFF_TRACK_DAYS,
) -> ClinicalSummary:
    since = since or (datetime.now(UTC) - timedelta(days=30)).date()
    client = await progress.check_client(conn, who, client_id)
    prog = await progress.progress_of_live_client(conn, who, client_id, off_track_days=off_track_days)
    since_ts = datetime(since.year, since.month, since.day, tzinfo=UTC)
    row = (await conn.execute(RECORD, {"org": who.org_id, "client": client_id, "since": since_ts})).one()
    record = dict(row._mapping)
    strengths = {s["id"]: s for s in record["strengths"]}
    day = since.isoformat()

    assessment: list[str] = []
    if client.preferred_future:
        assessment.append(f"Preferred future, in the client's words: {_q(client.preferred_future.strip())}")
    for s in record["strengths"]:
        if s["status"] == "retired":
            continue
        line = f"{_strength_name(s)}, {s['domain']} {s['kind'].replace('_', ' ')}"
        if _behavioural(s["description"], s["label"]):
            line += f": client {_verb_phrase(s['description'])}"
        if s["context"]:
            line += f"; shows up {_verb_phrase(s['context'])}"
        if s["under_stress"]:
            line += "; also shows up under stress"
        if s["evidence"]:
            line += f"; {len(s['evidence'])} lived example{'s' if len(s['evidence']) != 1 else ''} recorded"
        if s["client_label"]:
            line += f"; in the client's words {_q(s['client_label'])}"
        assessment.append(line + ".")
    for p in record["protective"]:
        assessment.append(f"Protective factor ({p['category'].replace('_', ' ')}, {p['status'].replace('_', ' ')}): "
                          f"{p['description'].strip().rstrip('.')}.")
    for e in record["exceptions"]:
        conditions = ", ".join(c.replace("_", " ") for c in e["conditions"])
        assessment.append(f"Exception to {_q(e['problem'].strip())}: {_verb_phrase(e['description'])}"
                          + (f" (conditions: {conditions})" if conditions else "") + ".")
    if not assessment:
        assessment.append("No strengths recorded yet.")

    goal_lines: list[str] = []
    for g in prog.goals:
        line = f"{g.description.strip().rstrip('.')} ({g.lifecycle.replace('_', ' ')})."
        if g.strengths:
            line += " Builds on " + ", ".join(_strength_name(strengths.get(s.id, {"label": s.label,
                                                                                  "status": s.status}))
                                              for s in g.strengths) + "."
        if g.target:
            line += f" Target: {_target_text(g.target, g.markers)}."
        line += f" Milestones: {g.milestones_done} of {g.milestones_total} done"
        if g.next_milestone:
            due = f", due {g.next_milestone.due_date.isoformat()}" if g.next_milestone.due_date else ""
            line += f"; next: {_q(g.next_milestone.title)}{due}"
        line += "."
        if g.off_track:
            line += f" Off track: no improvement over the last {prog.off_track_days} days; review the plan."
        goal_lines.append(line)
    if not goal_lines:
        goal_lines.append("No goals recorded yet.")

    progress_lines: list[str] = []
    for s in record["strengths"]:
        uses = s["uses"]
        if not uses:
            continue
        first = uses[0]
        example = _q(first["situation"]) + (f", result: {_q(first['result'])}" if first["result"] else "")
        progress_lines.append(
            f"Client applied {_strength_name(s)} in {len(uses)} situation{'s' if len(uses) != 1 else ''} since "
            f"{day} (for example {example})."
        )
    for x in record["experiments"]:
        s = strengths.get(x["strength_id"])
        line = f"Experiment using {_strength_name(s) if s else 'a strength'}: {_q(x['plan'])}; done"
        if x["result"]:
            line += f"; result: {_q(x['result'])}"
        if x["confidence_before"] is not None and x["confidence_after"] is not None:
            line += f"; confidence {x['confidence_before']} to {x['confidence_after']} of 10"
        if x["debrief"]:
            line += f"; what the client learned: {_q(x['debrief'])}"
        progress_lines.append(line + ".")
    for m in record["milestones"]:
        if m["status"] == "done" and m["completed_since"]:
            progress_lines.append(f"Milestone reached: {_q(m['title'])} on {m['completed_on']}.")
    seen: set[UUID] = set()
    for g in prog.goals:
        for mk in g.markers:
            if mk.marker_id in seen:
                continue
            seen.add(mk.marker_id)
            sentence = _marker_sentence(mk)
            if sentence:
                progress_lines.append(sentence)
    if not progress_lines:
        progress_lines.append(f"No strength uses, experiments, milestones or measurements recorded since {day}.")

    safety = await _safety_section(conn, who, client_id)
    sections = [safety] if safety else []
    sections += [
        SummarySection(title="Assessment", lines=assessment),
        SummarySection(title="Goals", lines=goal_lines),
        SummarySection(title=f"Progress since {day}", lines=progress_lines),
    ]
    body = "\n\n".join(s.title + "\n" + "\n".join(f"- {line}" for line in s.lines) for s in sections)
    return ClinicalSummary(
        client_id=client_id, since=since, safety_priority=prog.safety_priority,
        text=f"Strengths-based summary (progress since {day})\n\n{body}\n", sections=sections,
        quality_hints=quality_hints(record, prog.goals),
    )
