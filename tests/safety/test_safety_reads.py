"""Reading alerts back: ``safety_alert_ids`` on every read of a measurement (REST read on both paths, list,
?include=, bulk export, GraphQL through its loaders and prefetch, FHIR), the FHIR Flag and the clinical summary
told from the immutable trigger."""

from __future__ import annotations

import orjson

from tests.support.factories import create
from tests.support.fastread import both, same
from tests.support.fhir import FHIR, all_pages, validate
from tests.support.gqlkit import gql
from tests.support.safety import ALL, gad7, instrument_marker, measurement, phq9


async def _setup(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    marker = await instrument_marker(c)
    m = (await c.post("/v1/measurements", json=measurement(marker, phq9(1, 6)))).json()
    fixed = (await c.patch(f"/v1/measurements/{m['id']}", json={"items": phq9(3, 8)})).json()
    quiet = (await c.post("/v1/measurements", json=measurement(marker, phq9(0, 2),
                                                               observed_at="2026-11-01T09:00:00Z"))).json()
    ids = [m["safety_alert"]["id"], fixed["safety_alert"]["id"]]
    return c, marker, m["id"], ids, quiet["id"]


async def test_safety_alert_ids_on_every_rest_read(api, served):
    c, marker, mid, ids, quiet = await _setup(api)
    fast, slow = await both(c, f"/v1/measurements/{mid}")
    same(fast, slow)
    assert len(served) == 1  # the direct path answered the first
    assert fast.json()["safety_alert_ids"] == ids
    assert "safety_alert" not in fast.json()  # only writes say which alert they opened
    listed = {m["id"]: m["safety_alert_ids"] for m in
              (await c.get("/v1/measurements", params={"marker_id": marker["id"]})).json()["data"]}
    assert listed == {mid: ids, quiet: []}
    for parent in (f"/v1/outcome-markers/{marker['id']}", f"/v1/clients/{marker['client_id']}"):
        included = (await c.get(parent, params={"include": "measurements"})).json()["measurements"]
        assert {m["id"]: m["safety_alert_ids"] for m in included} == listed
    export = await c.get("/v1/bulk/export", params={"types": "measurement"})
    exported = {d["resource"]["id"]: d["resource"]["safety_alert_ids"] for d in map(orjson.loads,
                                                                                    export.content.splitlines())}
    assert exported == listed
    history = (await c.get(f"/v1/history/measurements/{mid}")).json()["data"]
    assert all("safety_alert_ids" not in v["record"] for v in history)  # stored fields only; reads compute it


async def test_safety_alert_ids_in_graphql_loaders_and_prefetch(api):
    c, marker, mid, ids, quiet = await _setup(api)
    one = await gql(c, "query($id: UUID!) { measurement(id: $id) { safetyAlertIds } }", {"id": mid})
    assert one["data"]["measurement"]["safetyAlertIds"] == ids
    shape = """measurements(first: 10) { edges { node { id safetyAlertIds } } }
               latestMeasurement { id safetyAlertIds }"""
    by_loader = await gql(c, f"query($id: UUID!) {{ outcomeMarker(id: $id) {{ {shape} }} }}", {"id": marker["id"]})
    prefetched = await gql(c, f"{{ outcomeMarkers(first: 5) {{ edges {{ node {{ {shape} }} }} }} }}")
    for node in (by_loader["data"]["outcomeMarker"], prefetched["data"]["outcomeMarkers"]["edges"][0]["node"]):
        assert {e["node"]["id"]: e["node"]["safetyAlertIds"] for e in node["measurements"]["edges"]} == \
            {mid: ids, quiet: []}
        assert node["latestMeasurement"] == {"id": mid, "safetyAlertIds": ids}
    listed = await gql(c, "{ measurements(first: 5) { edges { node { id safetyAlertIds } } } }")
    assert {e["node"]["id"]: e["node"]["safetyAlertIds"] for e in listed["data"]["measurements"]["edges"]} == \
        {mid: ids, quiet: []}


async def test_fhir_observation_links_its_flags_and_the_flag_tells_the_trigger(api):
    c, marker, mid, ids, _ = await _setup(api)
    obs = (await c.get(f"{FHIR}/Observation/{mid}")).json()
    validate(obs)
    assert [e["valueReference"]["reference"] for e in obs["extension"]] == [f"Flag/{i}" for i in ids]
    searched = [o for o in await all_pages(c, f"{FHIR}/Observation?patient={marker['client_id']}") if o["id"] == mid]
    assert searched == [obs]
    flag = (await c.get(f"{FHIR}/Flag/{ids[1]}")).json()
    validate(flag)
    assert flag["code"]["text"].startswith("PHQ-9 item 9 (thoughts of being better off dead or of self-harm) "
                                           "answered 3 of 3; total 8 (mild)")
    assert [cd["code"] for cd in flag["code"]["coding"]] == ["safety-alert", "item9"]
    by_url = {e["url"].rsplit("/", 1)[-1]: e for e in flag["extension"]}
    assert [cd["code"] for cd in by_url["flag-priority"]["valueCodeableConcept"]["coding"]] == ["PH", "urgent"]
    parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value"))
             for p in by_url["safety-alert-trigger"]["extension"]}
    assert parts == {"kind": "item9", "instrument": "phq9", "item9": 3, "total": 8, "band": "mild"}
    assert flag["period"]["start"].startswith("2026-11-20T08:30:00")
    client = await create(c, "clients")
    by_hand = await create(c, "safety-alerts", client_id=client["id"], reason="Disclosed a plan in session")
    flag = (await c.get(f"{FHIR}/Flag/{by_hand['id']}")).json()
    validate(flag)
    assert flag["code"]["coding"][1]["code"] == "raised-by-clinician"
    assert flag["code"]["text"] == "Raised by a clinician: Disclosed a plan in session"
    for cs in ("safety-alert-trigger", "safety-alert-severity"):
        served_cs = await api.http.get(f"{FHIR}/CodeSystem/{cs}")
        assert served_cs.status_code == 200
        validate(served_cs.json())


async def test_the_summary_puts_unresolved_alerts_first_told_from_their_trigger(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    phq = await instrument_marker(c)
    gad = await instrument_marker(c, "gad7", client_id=phq["client_id"])
    cid = phq["client_id"]
    urgent = (await c.post("/v1/measurements", json=measurement(phq, phq9(3, 24),
                                                                observed_at="2026-11-18T09:00:00Z"))).json()
    anxious = (await c.post("/v1/measurements", json=measurement(gad, gad7(16),
                                                                 observed_at="2026-11-10T09:00:00Z"))).json()
    await c.patch(f"/v1/safety-alerts/{anxious['safety_alert']['id']}", json={"status": "acknowledged"})
    done = await create(c, "safety-alerts", client_id=cid, reason="Old concern")
    await c.patch(f"/v1/safety-alerts/{done['id']}", json={"status": "resolved", "resolution_note": "Resolved"})
    await create(c, "safety-alerts", client_id=cid, reason="Mentioned not wanting to wake up.",
                 observed_at="2026-11-12T09:00:00Z")
    first = (await c.get(f"/v1/clients/{cid}/summary")).json()
    assert first == (await c.get(f"/v1/clients/{cid}/summary")).json()  # the same data, the same text
    safety = first["sections"][0]
    assert safety["title"] == "Safety"
    assert safety["lines"][0].startswith("3 unresolved safety alerts")
    urgent_line, gad_line, hand_line = safety["lines"][1:]
    assert urgent_line.startswith("Urgent: PHQ-9 item 9 (thoughts of being better off dead or of self-harm) "
                                  "answered 3 of 3; total 24 (severe) (observed 2026-11-18); open since ")
    assert gad_line.startswith("High: GAD-7 total 16 (severe): severe symptoms, for clinician review "
                               "(observed 2026-11-10); acknowledged on ")
    assert hand_line.startswith("High: Raised by a clinician: Mentioned not wanting to wake up (observed 2026-11-12)")
    assert "Old concern" not in first["text"]
    assert urgent["safety_alert"]["reason"] not in first["text"]  # told from the trigger, not from stored text
