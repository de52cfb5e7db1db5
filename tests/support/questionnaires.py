"""PHQ-9 and GAD-7 bodies for the FHIR write paths: an Observation with a component per item, and a
QuestionnaireResponse of the LOINC questionnaires."""

from __future__ import annotations

from typing import Any

from tests.support.fhir import FHIR, FHIR_JSON

PHQ9 = "http://loinc.org/q/44249-1"
GAD7 = "http://loinc.org/q/69737-5"
PHQ9_ITEMS = ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"]
GAD7_ITEMS = ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"]
ANSWERS = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]
AUTHORED = "2026-11-20T09:30:00+01:00"


def phq9_observation(patient: str, items: list[int], **extra: Any) -> dict[str, Any]:
    """A PHQ-9 as an Observation with one component per item."""
    return {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "survey"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "44249-1"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-21T10:00:00-05:00",
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                       "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": ANSWERS[v]}]}}
                      for code, v in zip(PHQ9_ITEMS, items, strict=False)],
        **extra,
    }


def questionnaire_response(pid: str, scores: list[int], *, questionnaire: str = PHQ9, total: int | None = None,
                           **extra: Any) -> dict[str, Any]:
    """A completed PHQ-9 (or GAD-7) QuestionnaireResponse with these item scores."""
    codes_ = PHQ9_ITEMS if questionnaire == PHQ9 else GAD7_ITEMS
    items: list[dict[str, Any]] = [
        {"linkId": f"/{code}", "answer": [{"valueCoding": {"system": "http://loinc.org", "code": ANSWERS[s]}}]}
        for code, s in zip(codes_, scores, strict=False)]
    if total is not None:
        items.append({"linkId": "/44261-6" if questionnaire == PHQ9 else "/70274-6",
                      "answer": [{"valueInteger": total}]})
    return {"resourceType": "QuestionnaireResponse", "questionnaire": questionnaire, "status": "completed",
            "subject": {"reference": f"Patient/{pid}"}, "authored": AUTHORED, "item": items, **extra}


async def post_questionnaire_response(c: Any, body: dict[str, Any], **headers: str) -> Any:
    return await c.post(f"{FHIR}/QuestionnaireResponse", json=body,
                        headers={"Content-Type": FHIR_JSON, **headers})
