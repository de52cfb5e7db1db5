"""Code systems the facade uses: standard ones (LOINC, UCUM, THO, eLTSS) and our own, published as
CodeSystem resources at ``/fhir/R4/CodeSystem/{id}``. See schema/fhir-mapping.md for the sources."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from service.domain.enums import (
    AlertSeverity,
    AlertStatus,
    ExceptionCondition,
    MarkerKind,
    ProtectiveCategory,
    StrengthDomain,
    StrengthKind,
)

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
BCP47 = "urn:ietf:bcp:47"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
GOAL_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"
# eLTSS STU2 observation codes: "strength" (docs/standards.md §1.1 and §1.2).
ELTSS = "http://hl7.org/fhir/us/eltss/CodeSystem/eltss-observation-codes-temporary"
PROTECTIVE_FACTOR_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-protectiveFactor"

BASE = "https://strengths-api.dev/fhir"


def system(cs_id: str) -> str:
    return f"{BASE}/CodeSystem/{cs_id}"


SD_FLAG_MEASUREMENT = f"{BASE}/StructureDefinition/flag-measurement"
SD_ALERT_STATUS = f"{BASE}/StructureDefinition/safety-alert-status"
SD_ALERT_TRIGGER = f"{BASE}/StructureDefinition/safety-alert-trigger"  # complex: kind, instrument, item9, total, band
SD_OBSERVATION_SAFETY_ALERT = f"{BASE}/StructureDefinition/observation-safety-alert"  # a Flag the Observation opened
# R4 core extension and its example code system (Flag priority: PH high, PM medium).
FLAG_PRIORITY_EXT = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_PRIORITY = "http://hl7.org/fhir/flag-priority-code"
SD_STRENGTH_STATUS = f"{BASE}/StructureDefinition/strength-status"
SD_PROTECTIVE_STATUS = f"{BASE}/StructureDefinition/protective-factor-status"
SD_TARGET_PERIOD = f"{BASE}/StructureDefinition/goal-target-period"
SD_TARGET_DURATION = f"{BASE}/StructureDefinition/goal-target-duration"
SD_OUTCOME_MARKER = f"{BASE}/StructureDefinition/outcome-marker"  # QuestionnaireResponse: the marker it measures
SD_SAFETY_ALERT = f"{BASE}/StructureDefinition/safety-alert"  # QuestionnaireResponse: an alert it opened (Flag)

# LOINC answer list LL358-3 (PHQ-9 / GAD-7 items): item score -> answer (docs/standards.md §1.3).
ITEM_ANSWERS = {0: ("LA6568-5", "Not at all"), 1: ("LA6569-3", "Several days"),
                2: ("LA6570-1", "More than half the days"), 3: ("LA6571-9", "Nearly every day")}
ANSWER_SCORES = {code: score for score, (code, _) in ITEM_ANSWERS.items()}

# Observation.category of a measurement, by marker kind (docs/standards.md §1.3: survey for instruments and
# mood, activity for observed behaviour such as steps and sleep).
MARKER_CATEGORY = {
    MarkerKind.instrument: "survey", MarkerKind.mood: "survey", MarkerKind.confidence: "survey",
    MarkerKind.custom: "survey", MarkerKind.frequency: "activity", MarkerKind.duration: "activity",
    MarkerKind.recovery_time: "activity",
}


def _concepts(enum: type[StrEnum], definitions: dict[str, str] | None = None) -> list[dict[str, Any]]:
    out = []
    for member in enum:
        concept = {"code": member.value.replace("_", "-"), "display": member.value.replace("_", " ").capitalize()}
        if definitions and member.value in definitions:
            concept["definition"] = definitions[member.value]
        out.append(concept)
    return out


def code_of(value: str) -> str:
    return str(value).replace("_", "-")


def value_of(code: str) -> str:
    return code.replace("-", "_")


_OUR: dict[str, tuple[str, str, list[dict[str, Any]]]] = {
    "observation-category": (
        "Strengths-based observation categories",
        "What a strengths-based Observation records (no standard category exists; docs/standards.md §1.1).",
        [
            {"code": "strength", "display": "Strength",
             "definition": "What the client can already do or draw on (an eLTSS strength)."},
            {"code": "protective-factor", "display": "Protective factor",
             "definition": "A resource around the client that mitigates risk (workflow-protectiveFactor)."},
            {"code": "exception", "display": "Exception",
             "definition": "A time when the problem is a little smaller (solution-focused practice)."},
        ],
    ),
    "observation-code": (
        "Strengths-based observation codes",
        "Codes for observations that have no standard code (docs/standards.md §1.1: exceptions are a gap).",
        [
            {"code": "protective-factor", "display": "Protective factor"},
            {"code": "exception", "display": "Exception: when the problem is smaller"},
            {"code": "safety-alert", "display": "Safety alert raised by a measurement"},
        ],
    ),
    "strength-domain": ("Strength domains", "Where a strength lives.", _concepts(StrengthDomain)),
    "strength-kind": ("Strength kinds", "What sort of strength it is.", _concepts(StrengthKind)),
    "protective-factor-category": ("Protective factor categories", "What sort of resource it is.",
                                   _concepts(ProtectiveCategory)),
    "exception-condition": ("Exception conditions", "What differs when the problem is smaller.",
                            _concepts(ExceptionCondition)),
    "safety-alert-status": ("Safety alert statuses", "Our alert workflow behind Flag.status.",
                            _concepts(AlertStatus)),
    "safety-alert-severity": ("Safety alert severities", "How soon a clinician must look (CONTRACT.md section 3).",
                              _concepts(AlertSeverity, {"urgent": "PHQ-9 item 9 answered 2 or 3",
                                                        "high": "Any other trigger, or a clinician's alert"})),
    "safety-alert-trigger": ("Safety alert triggers", "What opened a safety alert.", [
        {"code": "item9", "display": "PHQ-9 item 9 above 0",
         "definition": "Thoughts of being better off dead or of self-harm endorsed (also when the total is severe)"},
        {"code": "severe-total", "display": "Severe total",
         "definition": "An instrument total in its severe band (PHQ-9 20 or more, GAD-7 15 or more)"},
        {"code": "raised-by-clinician", "display": "Raised by a clinician",
         "definition": "Raised by hand; the reason says why"},
    ]),
    "outcome-marker": ("Outcome markers", "Local marker codes: the code is the marker id (no LOINC code).", []),
}


def code_system(cs_id: str) -> dict[str, Any] | None:
    entry = _OUR.get(cs_id)
    if entry is None:
        return None
    title, description, concepts = entry
    resource: dict[str, Any] = {
        "resourceType": "CodeSystem", "id": cs_id, "url": system(cs_id), "version": "1.0.0",
        "name": "".join(p.capitalize() for p in cs_id.split("-")), "title": title, "status": "active",
        "experimental": False, "publisher": "Strengths & Goals API", "description": description,
        "caseSensitive": True,
    }
    if concepts:
        resource.update(content="complete", count=len(concepts), concept=concepts)
    else:
        resource["content"] = "not-present"
    return resource


CODE_SYSTEM_IDS = tuple(_OUR)
