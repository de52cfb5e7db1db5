"""Our records as FHIR R4 resources (schema/fhir-mapping.md is the written form of this module).

Every function takes the record as JSON (dates as strings), so current rows and history snapshots map
alike.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from service.domain.instruments import INSTRUMENTS
from service.domain.safety import trigger_text
from service.fhir import codes as c
from service.fhir import questionnaires as q
from service.http import dumps

# Observation ids: a measurement keeps its UUID; the other kinds carry a prefix so one id names one record.
OBSERVATION_KINDS: dict[str, str] = {
    "measurements": "", "strengths": "strength-", "protective-factors": "protective-factor-",
    "exceptions": "exception-",
}
FHIR_TYPES = {"clients": "Patient", "goals": "Goal", "safety-alerts": "Flag", **dict.fromkeys(OBSERVATION_KINDS,
                                                                                              "Observation")}


def as_json(record: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(dumps(record))
    return doc


def observation_id(collection: str, record_id: Any) -> str:
    return f"{OBSERVATION_KINDS[collection]}{record_id}"


def parse_observation_id(text: str) -> tuple[str, UUID] | None:
    for collection, prefix in sorted(OBSERVATION_KINDS.items(), key=lambda kv: -len(kv[1])):
        if text.startswith(prefix):
            try:
                return collection, UUID(text[len(prefix):])
            except ValueError:
                return None
    return None


def resource_id(collection: str, record_id: Any) -> str:
    return observation_id(collection, record_id) if collection in OBSERVATION_KINDS else str(record_id)


def reference(collection: str, record_id: Any) -> dict[str, str]:
    return {"reference": f"{FHIR_TYPES[collection]}/{resource_id(collection, record_id)}"}


def _meta(rec: dict[str, Any]) -> dict[str, Any]:
    return {"versionId": str(rec["version"]), "lastUpdated": rec["updated_at"]}


def _identifiers(ids: list[dict[str, str]] | None) -> list[dict[str, str]]:
    return [{"system": i["system"], "value": i["value"]} for i in ids or []]


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _concept(*codings: dict[str, str], text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": list(codings)}
    if text:
        out["text"] = text
    return out


def _clean(resource: dict[str, Any]) -> dict[str, Any]:
    """FHIR forbids empty arrays, empty objects and nulls."""
    return {k: v for k, v in resource.items() if v not in (None, [], {}, "")}


def _ext(url: str, **value: Any) -> dict[str, Any]:
    return {"url": url, **value}


# ---------------------------------------------------------------- Patient


def patient(rec: dict[str, Any]) -> dict[str, Any]:
    language = rec.get("preferred_language")
    return _clean({
        "resourceType": "Patient", "id": str(rec["id"]), "meta": _meta(rec),
        "identifier": _identifiers(rec.get("identifiers")),
        "active": rec.get("status") != "discharged",
        "name": [{"text": rec["display_name"]}],
        "birthDate": rec.get("birth_date"),
        "communication": [{"language": _concept(_coding(c.BCP47, language)), "preferred": True}] if language else [],
    })


# ---------------------------------------------------------------- Goal


def marker_concept(marker: dict[str, Any]) -> dict[str, Any]:
    local = _coding(c.system("outcome-marker"), str(marker["id"]), marker["name"])
    if marker.get("instrument"):
        spec = INSTRUMENTS[marker["instrument"]]
        return _concept(_coding(c.LOINC, spec.panel_loinc, f"{spec.name} panel"), local, text=marker["name"])
    if marker.get("code"):
        return _concept(_coding(c.LOINC, marker["code"]), local, text=marker["name"])
    return _concept(local, text=marker["name"])


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit:
        q.update(unit=unit, system=c.UCUM, code=unit)
    return q


COMPARATORS = {">=": ">=", "<=": "<=", ">": ">", "<": "<"}


def goal(rec: dict[str, Any], markers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    targets: list[dict[str, Any]] = []
    target = rec.get("target")
    if target:
        marker = markers.get(str(target.get("marker_id"))) if target.get("marker_id") else None
        detail = _quantity(target["value"], marker.get("unit") if marker else None)
        if target["comparator"] in COMPARATORS:
            detail["comparator"] = COMPARATORS[target["comparator"]]
        item: dict[str, Any] = {
            "measure": marker_concept(marker) if marker else {"text": "Target value"},
            "detailQuantity": detail,
        }
        extensions = []
        if target.get("period"):
            extensions.append(_ext(c.SD_TARGET_PERIOD, valueString=target["period"]))
        if target.get("duration"):
            extensions.append(_ext(c.SD_TARGET_DURATION, valueString=target["duration"]))
        if extensions:
            item["extension"] = extensions
        if rec.get("target_date"):
            item["dueDate"] = rec["target_date"]
        targets.append(item)
    elif rec.get("target_date"):
        targets.append({"dueDate": rec["target_date"]})
    return _clean({
        "resourceType": "Goal", "id": str(rec["id"]), "meta": _meta(rec),
        "extension": [_ext(c.PROTECTIVE_FACTOR_EXT, valueReference=reference("strengths", sid))
                      for sid in rec.get("strength_ids") or []],
        "identifier": _identifiers(rec.get("external_ids")),
        "lifecycleStatus": c.code_of(rec["lifecycle"]),
        "achievementStatus": _concept(_coding(c.GOAL_ACHIEVEMENT, c.code_of(rec["achievement"]))),
        "description": {"text": rec["description"]},
        "subject": reference("clients", rec["client_id"]),
        "startDate": rec.get("start_date"),
        "target": targets,
        "note": [{"text": f"Barrier: {b}"} for b in rec.get("barriers") or []],
    })


# ---------------------------------------------------------------- Observation


def _category(code: str) -> dict[str, Any]:
    return _concept(_coding(c.OBS_CATEGORY, code))


def _ours(cs_id: str, code: str) -> dict[str, Any]:
    return _concept(_coding(c.system(cs_id), c.code_of(code)))


def measurement(rec: dict[str, Any], marker: dict[str, Any]) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": observation_id("measurements", rec["id"]), "meta": _meta(rec),
        # The Flags it opened (every read; exports as of their transactionTime: search.with_alert_ids).
        "extension": [_ext(c.SD_OBSERVATION_SAFETY_ALERT, valueReference={"reference": f"Flag/{alert_id}"})
                      for alert_id in rec.get("safety_alert_ids") or []],
        "identifier": [{"system": rec["source"], "value": rec["external_id"]}]
        if rec.get("source") and rec.get("external_id") else [],
        "status": "final",
        "category": [_category(c.MARKER_CATEGORY.get(marker["kind"], "survey"))],
        "code": marker_concept(marker),
        "subject": reference("clients", rec["client_id"]),
        "focus": [reference("goals", marker["goal_id"])] if marker.get("goal_id") else [],
        "effectiveDateTime": rec["observed_at"],
        "issued": rec["created_at"],
        "note": [{"text": rec["note"]}] if rec.get("note") else [],
        # US Core's pattern for scored instruments: the Observation derives from the QuestionnaireResponse.
        "derivedFrom": [{"reference": f"QuestionnaireResponse/{rec['id']}"}] if marker.get("instrument") else [],
    }
    if marker.get("instrument"):
        spec = INSTRUMENTS[marker["instrument"]]
        components = []
        for code, score in zip(spec.item_loincs, rec.get("items") or [], strict=False):
            answer, display = c.ITEM_ANSWERS[score]
            components.append({"code": _concept(_coding(c.LOINC, code)),
                               "valueCodeableConcept": _concept(_coding(c.LOINC, answer, display), text=str(score))})
        components.append({"code": _concept(_coding(c.LOINC, spec.total_loinc, f"{spec.name} total score")),
                           "valueQuantity": _quantity(rec["value"], spec.unit)})
        obs["component"] = components
        obs["interpretation"] = [{"text": spec.band(rec["value"]).replace("_", " ")}]
    else:
        obs["valueQuantity"] = _quantity(rec["value"], marker.get("unit"))
    return _clean(obs)


STRENGTH_STATUS = {"hypothesis": "preliminary", "confirmed": "final", "retired": "final"}


def strength(rec: dict[str, Any]) -> dict[str, Any]:
    notes = [rec.get("description"), rec.get("client_label") and f"In the client's words: {rec['client_label']}",
             rec.get("context") and f"Context: {rec['context']}",
             rec.get("suppressed_in") and f"Held back in: {rec['suppressed_in']}",
             *(f"Example: {e}" for e in rec.get("evidence") or [])]
    return _clean({
        "resourceType": "Observation", "id": observation_id("strengths", rec["id"]), "meta": _meta(rec),
        "extension": [_ext(c.SD_STRENGTH_STATUS, valueCode=rec["status"])],
        "identifier": _identifiers(rec.get("external_ids")),
        "status": STRENGTH_STATUS[rec["status"]],
        "category": [_category("survey"), _ours("observation-category", "strength"),
                     _ours("strength-domain", rec["domain"]), _ours("strength-kind", rec["kind"])],
        "code": _concept(_coding(c.ELTSS, "strength", "Strength"), text="Strength"),
        "subject": reference("clients", rec["client_id"]),
        "effectiveDateTime": rec["created_at"],
        "issued": rec["created_at"],
        "valueString": rec["label"],
        "note": [{"text": n} for n in notes if n],
    })


def protective_factor(rec: dict[str, Any]) -> dict[str, Any]:
    return _clean({
        "resourceType": "Observation", "id": observation_id("protective-factors", rec["id"]), "meta": _meta(rec),
        "extension": [_ext(c.SD_PROTECTIVE_STATUS, valueCode=c.code_of(rec["status"]))],
        "identifier": _identifiers(rec.get("external_ids")),
        "status": "final",
        "category": [_category("social-history"), _ours("observation-category", "protective-factor"),
                     _ours("protective-factor-category", rec["category"])],
        "code": _concept(_coding(c.ELTSS, "strength", "Strength"),
                         _coding(c.system("observation-code"), "protective-factor", "Protective factor"),
                         text="Protective factor"),
        "subject": reference("clients", rec["client_id"]),
        "effectiveDateTime": rec["created_at"],
        "issued": rec["created_at"],
        "valueString": rec["description"],
    })


def exception(rec: dict[str, Any]) -> dict[str, Any]:
    components = [{"code": {"text": "Problem"}, "valueString": rec["problem"]}]
    components += [{"code": _ours("exception-condition", cond), "valueBoolean": True}
                   for cond in rec.get("conditions") or []]
    return _clean({
        "resourceType": "Observation", "id": observation_id("exceptions", rec["id"]), "meta": _meta(rec),
        "identifier": _identifiers(rec.get("external_ids")),
        "status": "final",
        "category": [_category("survey"), _ours("observation-category", "exception")],
        "code": _concept(_coding(c.system("observation-code"), "exception", "Exception: when the problem is smaller"),
                         text="Exception"),
        "subject": reference("clients", rec["client_id"]),
        "effectiveDateTime": rec.get("observed_at") or rec["created_at"],
        "issued": rec["created_at"],
        "valueString": rec["description"],
        "derivedFrom": [reference("strengths", sid) for sid in rec.get("strength_ids") or []],
        "component": components,
    })


# ---------------------------------------------------------------- Flag


FLAG_PRIORITY = {"urgent": ("PH", "High priority"), "high": ("PM", "Medium priority")}


def _trigger_extension(trigger: dict[str, Any]) -> dict[str, Any]:
    parts = [_ext("kind", valueCode=c.code_of(trigger["kind"])), _ext("instrument", valueCode=trigger["instrument"]),
             _ext("total", valueInteger=trigger["total"]), _ext("band", valueCode=c.code_of(trigger["band"]))]
    if trigger.get("item9") is not None:
        parts.insert(2, _ext("item9", valueInteger=trigger["item9"]))
    return _ext(c.SD_ALERT_TRIGGER, extension=parts)


def flag(rec: dict[str, Any]) -> dict[str, Any]:
    """From what never changes (trigger, severity, observed_at) and the status; never from editable text."""
    extensions = [_ext(c.SD_ALERT_STATUS, valueCode=rec["status"])]
    if rec.get("measurement_id"):
        extensions.append(_ext(c.SD_FLAG_MEASUREMENT, valueReference=reference("measurements", rec["measurement_id"])))
    priority, display = FLAG_PRIORITY[rec["severity"]]
    extensions.append(_ext(c.FLAG_PRIORITY_EXT, valueCodeableConcept=_concept(
        _coding(c.FLAG_PRIORITY, priority, display), _coding(c.system("safety-alert-severity"), rec["severity"]),
        text=rec["severity"])))
    trigger = rec.get("trigger")
    if trigger:
        extensions.append(_trigger_extension(trigger))
    kind = c.code_of(trigger["kind"]) if trigger else "raised-by-clinician"
    period = {"start": rec["observed_at"]}
    if rec.get("resolved_at"):
        period["end"] = rec["resolved_at"]
    return _clean({
        "resourceType": "Flag", "id": str(rec["id"]), "meta": _meta(rec), "extension": extensions,
        "identifier": _identifiers(rec.get("external_ids")),
        "status": "inactive" if rec["status"] == "resolved" else "active",
        "category": [_concept(_coding(c.FLAG_CATEGORY, "safety", "Safety"))],
        "code": _concept(_coding(c.system("observation-code"), "safety-alert", "Safety alert"),
                         _coding(c.system("safety-alert-trigger"), kind), text=trigger_text(rec)),
        "subject": reference("clients", rec["client_id"]),
        "period": period,
    })


# ---------------------------------------------------------------- QuestionnaireResponse


def questionnaire_response(rec: dict[str, Any], marker: dict[str, Any]) -> dict[str, Any]:
    """An instrument measurement as the SDC response to the LOINC questionnaire (the questionnaires module)."""
    spec = INSTRUMENTS[marker["instrument"]]
    items = []
    for code, score in zip(spec.item_loincs, rec.get("items") or [], strict=False):
        answer, display = c.ITEM_ANSWERS[score]
        items.append({"linkId": q.link_id(code), "text": q.ITEM_TEXTS[code],
                      "answer": [{"valueCoding": _coding(c.LOINC, answer, display)}]})
    items.append({"linkId": q.link_id(spec.total_loinc), "text": q.ITEM_TEXTS[spec.total_loinc],
                  "answer": [{"valueInteger": int(rec["value"])}]})
    extensions = [_ext(c.SD_OUTCOME_MARKER, valueCoding=_coding(c.system("outcome-marker"), str(marker["id"]),
                                                                   marker["name"]))]
    # The Flags it opened, as the Observation names them.
    extensions += [_ext(c.SD_SAFETY_ALERT, valueReference=reference("safety-alerts", a))
                   for a in rec.get("safety_alert_ids") or []]
    return _clean({
        "resourceType": "QuestionnaireResponse", "id": str(rec["id"]), "meta": _meta(rec),
        "extension": extensions,
        "identifier": {"system": rec["source"], "value": rec["external_id"]}
        if rec.get("source") and rec.get("external_id") else None,
        "questionnaire": q.canonical(spec),
        "status": "completed",
        "subject": reference("clients", rec["client_id"]),
        "authored": rec["observed_at"],
        "item": items,
    })


SIMPLE = {"clients": patient, "strengths": strength, "protective-factors": protective_factor,
          "exceptions": exception, "safety-alerts": flag}


def marker_ids(records: list[tuple[str, dict[str, Any]]]) -> set[Any]:
    """The outcome markers the records' resources need (a measurement's own, a goal target's)."""
    out: set[Any] = set()
    for collection, rec in records:
        if collection == "measurements":
            out.add(str(rec["marker_id"]))
        elif collection == "goals" and (rec.get("target") or {}).get("marker_id"):
            out.add(str(rec["target"]["marker_id"]))
    return out


def resource(collection: str, rec: dict[str, Any], markers: dict[str, dict[str, Any]], *,
             questionnaire: bool = False) -> dict[str, Any] | None:
    """The one dispatch from a record (as JSON) to its resource, for reads, searches and bulk export alike;
    ``questionnaire``: a measurement as a QuestionnaireResponse, None when its marker is no instrument."""
    if collection == "measurements":
        marker = markers[str(rec["marker_id"])]
        if questionnaire:
            if not marker.get("instrument"):
                return None
            return questionnaire_response(rec, marker)
        return measurement(rec, marker)
    if collection == "goals":
        return goal(rec, markers)
    return SIMPLE[collection](rec)
