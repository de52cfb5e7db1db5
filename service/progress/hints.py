"""Quality hints: where the record falls short of what good strengths-based practice asks (CONTRACT.md section 4:
a strength without behaviour, a confirmed strength without evidence, no symptom measure, a protective factor at
risk, a goal or milestone that is not observable)."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from service.progress.schemas import GoalProgress, QualityHint
from service.progress.wording import quoted

# Words that name a state or a trait rather than something another person could see the client do.
VAGUE = re.compile(
    r"\b(feel|feels|feeling|better|understand|understands|aware|awareness|confident|confidence|improve|improved|"
    r"happier|happy|motivated|cope|coping|know|knows|realise|realize|ok|okay|good)\b", re.IGNORECASE,
)
COUNTED = re.compile(r"\d|\b(once|twice|two|three|four|five|six|seven|days?|times?|weeks?|nights?|mornings?)\b",
                     re.IGNORECASE)
FILLER = {"is", "are", "very", "really", "quite", "so", "a", "an", "the", "and", "person", "client", "she", "he",
          "they", "always", "generally", "usually", "often", "extremely", "highly", "pretty"}


def behavioural(description: str | None, label: str) -> bool:
    """Says what the client does: more than a trait label ('motivated', 'is very motivated', 'kind and caring')."""
    d = (description or "").strip()
    words = [w for w in re.findall(r"[a-z0-9'-]+", d.lower()) if w not in FILLER]
    return len(words) >= 3 and d.lower() != label.strip().lower()


def observable(text: str | None) -> bool:
    """Someone could see or count it: four words or more, and no state word unless it is counted."""
    t = (text or "").strip()
    if len(t.split()) < 4:
        return False
    return not (VAGUE.search(t) and not COUNTED.search(t))


def _hint(code: str, record_type: str, record_id: UUID, message: str) -> QualityHint:
    return QualityHint(code=code, record_type=record_type, record_id=record_id, message=message)


def strength_hints(strengths: list[dict[str, Any]]) -> list[QualityHint]:
    hints = []
    for s in strengths:
        if s["status"] == "retired":
            continue
        name = quoted(s["label"])
        if not behavioural(s["description"], s["label"]):
            hints.append(_hint("strength_not_behavioural", "strength", s["id"],
                               f"Strength {name} is described only by a trait label; describe what the client does, "
                               "where and when (a behavioural description)."))
        lived = bool(s["evidence"]) or s["uses_total"] > 0
        if s["status"] == "confirmed" and not lived:
            hints.append(_hint("confirmed_without_evidence", "strength", s["id"],
                               f"Strength {name} is marked confirmed but has no lived example; record one (evidence "
                               "or a strength use) or return it to a hypothesis."))
        if s["status"] == "hypothesis" and not lived:
            hints.append(_hint("hypothesis_without_evidence", "strength", s["id"],
                               f"Strength {name} is still a hypothesis with no lived example; record one (evidence "
                               "or a strength use) or explore it with the client."))
    return hints


def record_hints(client_id: UUID, record: dict[str, Any], goals: list[GoalProgress]) -> list[QualityHint]:
    hints = strength_hints(record["strengths"])
    if not any(s["recent"] for s in record["symptoms"]):
        hints.append(_hint("no_symptom_measure", "client", client_id,
                           "No PHQ-9 or GAD-7 in the last 4 weeks; measure symptoms beside strengths (and repeat "
                           "them to see change)."))
    for p in record["protective"]:
        if p["status"] in ("at_risk", "lost"):
            hints.append(_hint(f"protective_factor_{p['status']}", "protective_factor", p["id"],
                               f"Protective factor {quoted(p['description'])} is "
                               f"{'at risk' if p['status'] == 'at_risk' else 'lost'}; review it in the safety plan."))
    for g in goals:
        if g.lifecycle in ("completed", "cancelled"):
            continue
        missing = [] if g.target else ["no target (marker, comparator, value, period)"]
        if not observable(g.description):
            missing.append("a description that does not say what the client will do, where and how often")
        if missing:
            hints.append(_hint("goal_not_observable", "goal", g.goal_id,
                               f"Goal {quoted(g.description)} is not observable: " + " and ".join(missing) + "."))
    for m in record["milestones"]:
        if not observable(m["criteria"]):
            hints.append(_hint("milestone_not_observable", "milestone", m["id"],
                               f"Milestone {quoted(m['title'])} has completion criteria that are not observable "
                               f"({quoted(m['criteria'] or '')}); say what someone could see or count."))
    return hints
