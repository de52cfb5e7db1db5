"""Create of Observation through FHIR (same validation, same safety alert) and errors as OperationOutcome."""

from __future__ import annotations

from typing import Any

from tests.support.factories import create
from tests.support.fhir import FHIR, FHIR_JSON, all_pages, validate
from tests.support.questionnaires import phq9_observation as phq9

MARKER_SYSTEM = "https://strengths-api.dev/fhir/CodeSystem/outcome-marker"


def outcome(r, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(FHIR_JSON)
    body = r.json()
    validate(body)
    assert body["resourceType"] == "OperationOutcome"
    return body


async def _setup(api):
    org = await api.org("A")
    c = api.client(await api.token(org, "system/*.cruds"))
    client = await create(c, "clients")
    marker = await create(c, "outcome-markers", client_id=client["id"], kind="instrument", name="PHQ-9",
                          instrument="phq9")
    return org, c, client, marker


async def test_phq9_item9_posted_through_fhir_opens_a_flag_found_at_once(api):
    org, c, client, _marker = await _setup(api)
    pid = client["id"]
    assert await all_pages(c, f"{FHIR}/Flag?patient=Patient/{pid}&status=active") == []
    r = await c.post(f"{FHIR}/Observation", json=phq9(pid, [1, 1, 0, 2, 1, 0, 1, 0, 1],
                                                      identifier=[{"system": "urn:app:mood", "value": "resp-1"}]),
                     headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    created = r.json()
    validate(created)
    assert r.headers["location"].endswith(f"/fhir/R4/Observation/{created['id']}/_history/1")
    assert r.headers["etag"] == 'W/"1"'
    total = created["component"][-1]
    assert total["code"]["coding"][0]["code"] == "44261-6"
    assert total["valueQuantity"]["value"] == 7  # the service computed the total
    # The same record through REST, with the alert the measurement service opened in the same transaction.
    rest = (await c.get(f"/v1/safety-alerts?client_id={pid}")).json()["data"]
    assert [a["measurement_id"] for a in rest] == [created["id"]]
    flags = await all_pages(c, f"{FHIR}/Flag?patient=Patient/{pid}&status=active")
    assert len(flags) == 1
    flag = flags[0]
    assert flag["status"] == "active"
    assert flag["category"][0]["coding"][0]["code"] == "safety"
    assert {"valueReference": {"reference": f"Observation/{created['id']}"}}.items() <= next(
        e for e in flag["extension"] if "valueReference" in e).items()
    assert (await c.get(f"{FHIR}/Observation/{created['id']}")).json() == created
    found = await all_pages(c, f"{FHIR}/Observation?identifier=urn:app:mood|resp-1")
    assert [o["id"] for o in found] == [created["id"]]
    # Resolved through REST: the Flag turns inactive.
    await c.patch(f"/v1/safety-alerts/{flag['id']}", json={"status": "resolved", "resolution_note": "Called; safe"})
    assert await all_pages(c, f"{FHIR}/Flag?patient={pid}&status=active") == []
    inactive = await all_pages(c, f"{FHIR}/Flag?patient={pid}&status=inactive")
    assert inactive[0]["period"]["end"]
    # A benign PHQ-9 opens nothing; a plain quantity on a frequency marker maps too.
    r = await c.post(f"{FHIR}/Observation", json=phq9(pid, [0] * 9))
    assert r.status_code == 201, r.text
    assert len(await all_pages(c, f"{FHIR}/Flag?patient={pid}")) == 1
    freq = await create(c, "outcome-markers", client_id=pid)
    r = await c.post(f"{FHIR}/Observation", json={
        "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": MARKER_SYSTEM, "code": freq["id"]}]},
        "effectiveDateTime": "2026-11-21T10:00:00Z", "valueQuantity": {"value": 4, "unit": "/wk"}})
    assert r.status_code == 201, r.text
    assert r.json()["valueQuantity"] == {"value": 4.0, "unit": "/wk", "system": "http://unitsofmeasure.org",
                                         "code": "/wk"}


async def test_bad_observations_answer_operation_outcome(api):
    org, c, client, marker = await _setup(api)
    pid = client["id"]
    # The service's own rules, with the FHIR element named.
    body = outcome(await c.post(f"{FHIR}/Observation", json=phq9(pid, [1] * 8)), 422)
    assert body["issue"][0]["expression"] == ["Observation.component"]
    body = outcome(await c.post(f"{FHIR}/Observation", json=phq9(pid, [1] * 9, valueQuantity={"value": 3})), 422)
    assert body["issue"][0]["expression"] == ["Observation.value"]
    no_tz = phq9(pid, [1] * 9, effectiveDateTime="2026-11-21T10:00:00")
    body = outcome(await c.post(f"{FHIR}/Observation", json=no_tz), 422)
    assert body["issue"][0]["expression"] == ["Observation.effective"]
    body = outcome(await c.post(f"{FHIR}/Observation", json=phq9(pid, [1] * 9, code={"coding": [
        {"system": "http://loinc.org", "code": "69737-5"}]})), 422)
    assert body["issue"][0]["expression"] == ["Observation.code"]
    body = outcome(await c.post(f"{FHIR}/Observation", json={**phq9(pid, [1] * 9), "subject": {}}), 422)
    assert body["issue"][0]["expression"] == ["Observation.subject"]
    # Not JSON, not an Observation, not a search we understand: 400 (415 for another media type).
    outcome(await c.post(f"{FHIR}/Observation", content=b"{nope", headers={"Content-Type": FHIR_JSON}), 400)
    outcome(await c.post(f"{FHIR}/Observation", json={"resourceType": "Patient"}), 400)
    outcome(await c.post(f"{FHIR}/Observation", content=b"<Observation/>",
                         headers={"Content-Type": "application/fhir+xml"}), 415)
    for query in ("date=2026-13-01", "date=sa2026", "date=2026-11-01T10:00", "_count=abc", "_count=0",
                  "_sort=code", "_cursor=bogus", "_cursor=false&patient=nobody"):  # the last: a live fuzz finding
        outcome(await c.get(f"{FHIR}/Observation?{query}"), 400)
    outcome(await c.get(f"{FHIR}/Observation?foo=1", headers={"Prefer": "handling=strict"}), 400)
    outcome(await c.get(f"{FHIR}/Observation?foo=1"), 400)  # strict by default (CONTRACT.md section 6)
    assert (await c.get(f"{FHIR}/Observation?foo=1", headers={"Prefer": "handling=lenient"})).status_code == 200
    # Nothing of the refused posts was stored.
    assert (await c.get(f"/v1/measurements?client_id={pid}")).json()["data"] == []
    # Unknown ids and paths.
    outcome(await c.get(f"{FHIR}/Patient/not-a-uuid"), 404)
    outcome(await c.get(f"{FHIR}/Observation/strength-nope"), 404)
    outcome(await c.get(f"{FHIR}/Patient/{pid}/_history/9"), 404)
    outcome(await c.get(f"{FHIR}/Encounter"), 404)
    outcome(await api.http.get(f"{FHIR}/CodeSystem/nope"), 404)
    # Deleted: 410 on read and on vread of the deletion, earlier versions still readable.
    strength = await create(c, "strengths", client_id=pid)
    assert (await c.delete(f"/v1/strengths/{strength['id']}")).status_code == 204
    outcome(await c.get(f"{FHIR}/Observation/strength-{strength['id']}"), 410)
    outcome(await c.get(f"{FHIR}/Observation/strength-{strength['id']}/_history/2"), 410)
    assert (await c.get(f"{FHIR}/Observation/strength-{strength['id']}/_history/1")).status_code == 200
    hist = (await c.get(f"{FHIR}/Observation/strength-{strength['id']}/_history")).json()
    validate(hist)
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "POST"]
    # REST keeps problem+json.
    r = await c.get("/v1/clients/not-a-uuid")
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_other_organization_and_missing_scope_answer_operation_outcome(api):
    org, c, client, marker = await _setup(api)
    pid = client["id"]
    strength = await create(c, "strengths", client_id=pid)
    other = api.client(await api.token(await api.org("B"), "system/*.cruds"))
    for url in (f"{FHIR}/Patient/{pid}", f"{FHIR}/Observation/strength-{strength['id']}",
                f"{FHIR}/Patient/{pid}/_history", f"{FHIR}/Patient/{pid}/_history/1"):
        theirs = outcome(await other.get(url), 404)
        assert theirs["issue"][0]["code"] == "not-found"
    assert await all_pages(other, f"{FHIR}/Observation?patient={pid}") == []
    body = outcome(await other.post(f"{FHIR}/Observation", json=phq9(pid, [3] * 9)), 422)
    assert body["issue"][0]["expression"] == ["Observation.subject"]
    assert (await c.get(f"/v1/measurements?client_id={pid}")).json()["data"] == []

    anonymous = api.client(None)
    r = await anonymous.get(f"{FHIR}/Patient/{pid}")
    outcome(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await api.client("not-a-jwt").get(f"{FHIR}/Patient")
    outcome(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")

    # Aliases: Patient is Client; Observation of a strength needs Strength; Flag is SafetyAlert.
    patients_only = api.client(await api.token(org, "system/Patient.rs"))
    assert (await patients_only.get(f"{FHIR}/Patient/{pid}")).status_code == 200
    r = await patients_only.get(f"{FHIR}/Observation?patient={pid}")
    assert outcome(r, 403)["issue"][0]["code"] == "forbidden"
    assert r.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="system/Observation.s"'
    r = await patients_only.get(f"{FHIR}/Flag?patient={pid}")
    outcome(r, 403)
    assert 'scope="system/Flag.s"' in r.headers["www-authenticate"]
    measurements_only = api.client(await api.token(org, "system/Measurement.crs"))
    r = await measurements_only.get(f"{FHIR}/Observation/strength-{strength['id']}")
    outcome(r, 403)
    assert 'scope="system/Strength.r"' in r.headers["www-authenticate"]
    assert await all_pages(measurements_only, f"{FHIR}/Observation?patient={pid}") == []  # no strengths leak
    strengths_only = api.client(await api.token(org, "system/Strength.rs system/Observation.r"))
    listed = await all_pages(strengths_only, f"{FHIR}/Observation?patient={pid}")
    assert [o["id"] for o in listed] == [f"strength-{strength['id']}"]
    r = await strengths_only.post(f"{FHIR}/Observation", json=phq9(pid, [0] * 9))
    outcome(r, 403)
    assert 'scope="system/Observation.c"' in r.headers["www-authenticate"]
    # A patient-context token reaches only its patient.
    second = await create(c, "clients")
    mine = api.client(await api.token(org, "patient/Patient.rs patient/Observation.rs", patient=pid))
    assert [p["id"] for p in await all_pages(mine, f"{FHIR}/Patient")] == [pid]
    outcome(await mine.get(f"{FHIR}/Patient/{second['id']}"), 404)


async def test_versions_history_and_a_repeated_identifier(api):
    org, c, client, marker = await _setup(api)
    pid = client["id"]
    body = phq9(pid, [0] * 9, identifier=[{"system": "urn:app:mood", "value": "resp-9"}])
    assert (await c.post(f"{FHIR}/Observation", json=body)).status_code == 201
    again = outcome(await c.post(f"{FHIR}/Observation", json=body), 409)
    assert again["issue"][0]["code"] == "conflict"
    assert len((await c.get(f"/v1/measurements?client_id={pid}")).json()["data"]) == 1
    goal = await create(c, "goals", client_id=pid)
    await c.patch(f"/v1/goals/{goal['id']}", json={"lifecycle": "on_hold", "achievement": "no_change"})
    now = (await c.get(f"{FHIR}/Goal/{goal['id']}")).json()
    assert now["meta"]["versionId"] == "2"
    assert now["lifecycleStatus"] == "on-hold"
    assert now["achievementStatus"]["coding"][0]["code"] == "no-change"
    first = (await c.get(f"{FHIR}/Goal/{goal['id']}/_history/1")).json()
    assert first["lifecycleStatus"] == "active"
    assert first["meta"]["versionId"] == "1"
    hist = (await c.get(f"{FHIR}/Goal/{goal['id']}/_history")).json()
    validate(hist)
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]
    assert [e["request"]["method"] for e in hist["entry"]] == ["PUT", "POST"]
    assert [g["id"] for g in await all_pages(c, f"{FHIR}/Goal?patient={pid}&lifecycle-status=on-hold")] == [goal["id"]]
    assert await all_pages(c, f"{FHIR}/Goal?patient={pid}&lifecycle-status=active") == []


async def test_unsupported_methods_ids_and_paths(api):
    org, c, client, marker = await _setup(api)
    pid = client["id"]
    r = await c.delete(f"{FHIR}/Patient/{pid}")
    outcome(r, 405)
    assert r.headers["allow"] == "GET"
    outcome(await c.put(f"{FHIR}/Observation", json={}), 405)
    outcome(await c.get(f"{FHIR}/Observation/a/b/c/d"), 404)
    outcome(await c.get(f"{FHIR}/Observation/strength-{pid}"), 404)  # a client's id is no strength
    strength = await create(c, "strengths", client_id=pid)
    by_id = await all_pages(c, f"{FHIR}/Observation?_id=strength-{strength['id']},{strength['id']}&_format=json")
    assert [o["id"] for o in by_id] == [f"strength-{strength['id']}"]
    assert [p["id"] for p in await all_pages(c, f"{FHIR}/Patient?_id={pid}")] == [pid]


async def test_gad7_with_integer_items_and_paging_while_others_write(api):
    org, c, client, _phq = await _setup(api)
    pid = client["id"]
    await create(c, "outcome-markers", client_id=pid, kind="instrument", name="GAD-7", instrument="gad7")
    items = ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"]
    gad = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "69737-5"}]},
           "effectiveDateTime": "2026-11-01T08:00:00+00:00",
           "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "valueInteger": 3}
                         for code in items]}
    r = await c.post(f"{FHIR}/Observation", json=gad)
    assert r.status_code == 201, r.text
    assert r.json()["component"][-1]["valueQuantity"]["value"] == 21
    flags = await all_pages(c, f"{FHIR}/Flag?patient={pid}&status=active")  # severe band: an alert
    assert len(flags) == 1
    # Keyset paging: records written between pages neither repeat nor shift what is still to come.
    marker = await create(c, "outcome-markers", client_id=pid)
    for day in range(1, 7):
        await create(c, "measurements", client_id=pid, marker_id=marker["id"], value=day,
                     observed_at=f"2026-10-{day:02d}T12:00:00+00:00")
    first = (await c.get(f"{FHIR}/Observation?patient={pid}&code={marker['id']}&_count=3")).json()
    await create(c, "measurements", client_id=pid, marker_id=marker["id"], value=9,
                 observed_at="2026-09-01T12:00:00+00:00")  # sorts before everything already paged
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    rest = await all_pages(c, nxt.removeprefix("http://testserver"))
    values = [e["resource"]["valueQuantity"]["value"] for e in first["entry"]] + [
        o["valueQuantity"]["value"] for o in rest]
    assert values == [1, 2, 3, 4, 5, 6]


async def test_conditional_create_with_if_none_exist_is_exactly_once(api):
    import asyncio

    org, c, client, _phq = await _setup(api)
    pid = client["id"]
    body = phq9(pid, [0] * 9, identifier=[{"system": "urn:app:mood", "value": "resp-42"}])
    cond = {"If-None-Exist": "identifier=urn:app:mood|resp-42"}
    replies = await asyncio.gather(*(c.post(f"{FHIR}/Observation", json=body, headers=cond) for _ in range(5)))
    assert sorted(r.status_code for r in replies) == [200, 200, 200, 200, 201], [r.text for r in replies]
    assert len({r.json()["id"] for r in replies}) == 1
    assert len((await c.get(f"/v1/measurements?client_id={pid}")).json()["data"]) == 1
    again = await c.post(f"{FHIR}/Observation", json=body, headers=cond)
    assert again.status_code == 200
    assert again.json()["id"] == replies[0].json()["id"]
    outcome(await c.post(f"{FHIR}/Observation", json=body, headers={"If-None-Exist": "code=44249-1"}), 400)


async def test_create_honours_idempotency_key(api):
    org, c, client, _marker = await _setup(api)
    headers = {"Content-Type": FHIR_JSON, "Idempotency-Key": "fhir-retry-1"}
    body = phq9(client["id"], [1, 1, 0, 2, 1, 0, 1, 0, 0])
    first = await c.post(f"{FHIR}/Observation", json=body, headers=headers)
    again = await c.post(f"{FHIR}/Observation", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert len((await c.get(f"/v1/measurements?client_id={client['id']}")).json()["data"]) == 1
    other = await c.post(f"{FHIR}/Observation", json=phq9(client["id"], [0] * 9), headers=headers)
    assert other.status_code == 422
    assert other.json()["resourceType"] == "OperationOutcome"
