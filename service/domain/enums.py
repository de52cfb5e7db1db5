"""Every enumeration of CONTRACT.md section 3, in one place: the pydantic schemas validate with them and
the migrations turn them into CHECK constraints."""

from __future__ import annotations

from enum import StrEnum


class ClientStatus(StrEnum):
    active = "active"
    paused = "paused"
    discharged = "discharged"


class StrengthDomain(StrEnum):
    personal = "personal"
    relational = "relational"
    community = "community"
    cultural = "cultural"
    spiritual = "spiritual"
    practical = "practical"


class StrengthKind(StrEnum):
    skill = "skill"
    value = "value"
    character = "character"
    external_support = "external_support"


class StrengthSource(StrEnum):
    client_report = "client_report"
    clinician_observation = "clinician_observation"
    via_inventory = "via_inventory"
    cliftonstrengths = "cliftonstrengths"
    other_instrument = "other_instrument"
    collateral = "collateral"


class StrengthStatus(StrEnum):
    hypothesis = "hypothesis"
    confirmed = "confirmed"
    retired = "retired"


class ProtectiveCategory(StrEnum):
    relationship = "relationship"
    routine = "routine"
    belief = "belief"
    responsibility = "responsibility"
    housing = "housing"
    healthcare_access = "healthcare_access"
    social_support = "social_support"
    cultural = "cultural"
    spiritual = "spiritual"
    other = "other"


class ProtectiveStatus(StrEnum):
    present = "present"
    at_risk = "at_risk"
    lost = "lost"


class ExceptionCondition(StrEnum):
    sleep = "sleep"
    structure = "structure"
    social_contact = "social_contact"
    reduced_triggers = "reduced_triggers"
    other = "other"


class GoalLifecycle(StrEnum):
    proposed = "proposed"
    active = "active"
    on_hold = "on_hold"
    completed = "completed"
    cancelled = "cancelled"


class GoalAchievement(StrEnum):
    in_progress = "in_progress"
    improving = "improving"
    worsening = "worsening"
    no_change = "no_change"
    achieved = "achieved"
    not_achieved = "not_achieved"


class Comparator(StrEnum):
    gte = ">="
    lte = "<="
    gt = ">"
    lt = "<"
    eq = "="


class MilestoneStatus(StrEnum):
    planned = "planned"
    in_progress = "in_progress"
    done = "done"
    skipped = "skipped"


class MarkerKind(StrEnum):
    frequency = "frequency"
    duration = "duration"
    confidence = "confidence"
    recovery_time = "recovery_time"
    instrument = "instrument"
    mood = "mood"
    custom = "custom"


class Instrument(StrEnum):
    phq9 = "phq9"
    gad7 = "gad7"


class Direction(StrEnum):
    higher_is_better = "higher_is_better"
    lower_is_better = "lower_is_better"


class ExperimentStatus(StrEnum):
    planned = "planned"
    done = "done"
    not_done = "not_done"


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class AlertSeverity(StrEnum):
    """How soon a clinician must look: ``urgent`` for PHQ-9 item 9 at 2 or more, ``high`` otherwise."""

    urgent = "urgent"
    high = "high"


class TriggerKind(StrEnum):
    """What in a measurement opened an alert."""

    item9 = "item9"
    severe_total = "severe_total"
