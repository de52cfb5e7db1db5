"""FHIR Observation create: a note whose shape is not a list of Annotations with string text is a 422 naming
Observation.note (found by mypy: the texts were joined unchecked, a 500 for a number)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.factories import create
from tests.support.fhir import FHIR, FHIR_JSON, validate

MARKER_SYSTEM = "https://strengths-api.dev/fhir/CodeSystem/outcome-marker"


def observation(patient: str, marker: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": MARKER_SYSTEM, "code": marker}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-21T10:00:00-05:00",
        "valueQuantity": {"value": 4},
        **extra,
    }


@pytest.mark.parametrize("note", [5, [{"text": 5}], [{"text": ["a"]}], [{"text": {"div": "x"}}], ["plain"], "plain"])
async def test_a_malformed_note_is_a_422_at_observation_note(api, note):
    org = await api.org("A")
    c = api.client(await api.token(org, "system/*.cruds"))
    client = await create(c, "clients")
    marker = await create(c, "outcome-markers", client_id=client["id"], kind="custom", name="Mood")
    body = observation(client["id"], marker["id"], note=note)
    r = await c.post(f"{FHIR}/Observation", json=body, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 422, r.text
    outcome = r.json()
    validate(outcome)
    assert outcome["issue"][0]["expression"] == ["Observation.note"]
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "invalid_observation"
    assert (await c.get(f"/v1/measurements?client_id={client['id']}")).json()["data"] == []


async def test_string_notes_are_kept_and_empty_ones_skipped(api):
    org = await api.org("A")
    c = api.client(await api.token(org, "system/*.cruds"))
    client = await create(c, "clients")
    marker = await create(c, "outcome-markers", client_id=client["id"], kind="custom", name="Mood")
    body = observation(client["id"], marker["id"], note=[{"text": "Slept well"}, {"text": ""}, {"text": "Walked"}])
    r = await c.post(f"{FHIR}/Observation", json=body, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 201, r.text
    stored = (await c.get(f"/v1/measurements?client_id={client['id']}")).json()["data"]
    assert [m["note"] for m in stored] == ["Slept well\nWalked"]
