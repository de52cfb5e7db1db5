"""CONTRACT.md section 3: every path that stores or changes a measurement opens the alerts it must, in the same
transaction, and returns them; a correction that raises the severity or changes the kind opens a new one."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from tests.support.factories import NOW, create
from tests.support.fhir import FHIR, FHIR_JSON, all_pages, validate
from tests.support.gqlkit import gql
from tests.support.harness import Api
from tests.support.questionnaires import phq9_observation
from tests.support.safety import ALL, alerts_of, gad7, instrument_marker, measurement, phq9, trigger
from tests.support.webhooks import subscribe


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_create_opens_high_for_item9_1_and_urgent_for_item9_3(c):
    marker = await instrument_marker(c)
    r = await c.post("/v1/measurements", json=measurement(marker, phq9(1, 6)))
    assert r.status_code == 201, r.text
    alert = r.json()["safety_alert"]
    assert (alert["severity"], alert["status"], alert["trigger"]) == ("high", "open", trigger("item9", 1, 6, "mild"))
    assert alert["measurement_id"] == r.json()["id"]
    assert _instant(alert["observed_at"]) == _instant(NOW)  # the measurement's time, not the write's
    assert r.json()["safety_alert_ids"] == [alert["id"]]
    urgent = (await c.post("/v1/measurements", json=measurement(marker, phq9(3, 8)))).json()["safety_alert"]
    assert (urgent["severity"], urgent["trigger"]) == ("urgent", trigger("item9", 3, 8, "mild"))
    quiet = (await c.post("/v1/measurements", json=measurement(marker, phq9(0, 5)))).json()
    assert (quiet["safety_alert"], quiet["safety_alert_ids"]) == (None, [])


async def test_patch_correction_opens_a_new_alert_when_it_newly_meets_or_raises_severity(c):
    marker = await instrument_marker(c)
    m = (await c.post("/v1/measurements", json=measurement(marker, phq9(0, 5)))).json()
    assert m["safety_alert"] is None

    async def correct(items: list[int]) -> dict:
        r = await c.patch(f"/v1/measurements/{m['id']}", json={"items": items})
        assert r.status_code == 200, r.text
        return r.json()

    first = await correct(phq9(1, 6))  # newly meets the item 9 trigger
    assert (first["safety_alert"]["severity"], first["safety_alert"]["trigger"]["item9"]) == ("high", 1)
    second = await correct(phq9(3, 8))  # item 9 from 1 to 3: the severity rises to urgent
    assert second["safety_alert"]["severity"] == "urgent"
    assert second["safety_alert_ids"] == [first["safety_alert"]["id"], second["safety_alert"]["id"]]
    assert (await correct(phq9(2, 7)))["safety_alert"] is None  # still item 9, still urgent: nothing new
    after = await correct(phq9(0, 4))  # no longer meets it: the alerts stay as they are
    assert after["safety_alert"] is None
    assert after["safety_alert_ids"] == second["safety_alert_ids"]
    stored = await alerts_of(c, m["id"])
    assert [(a["severity"], a["status"], a["trigger"]["item9"]) for a in stored] == [("urgent", "open", 3),
                                                                                     ("high", "open", 1)]
    assert (await c.get(f"/v1/measurements/{m['id']}")).json()["safety_alert_ids"] == second["safety_alert_ids"]


async def test_put_by_external_id_correction_opens_an_urgent_alert(c):
    marker = await instrument_marker(c)
    url, ident = "/v1/measurements", {"external_id": "urn:app:mood|r-1"}
    created = await c.put(url, params=ident, json=measurement(marker, phq9(1, 6)))
    assert created.status_code == 201, created.text
    assert created.json()["safety_alert"]["severity"] == "high"
    corrected = await c.put(url, params=ident, json=measurement(marker, phq9(3, 8)))
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["id"] == created.json()["id"]
    assert corrected.json()["safety_alert"]["severity"] == "urgent"
    again = await c.put(url, params=ident, json=measurement(marker, phq9(3, 8)))
    assert again.json()["safety_alert"] is None
    assert len(await alerts_of(c, created.json()["id"])) == 2


async def test_batch_opens_alerts_per_item_and_a_duplicate_changes_nothing(c):
    phq, gad = await instrument_marker(c), await instrument_marker(c, "gad7")
    items = [measurement(phq, phq9(1, 6), source="urn:app", external_id="b1"),
             measurement(phq, phq9(3, 8), source="urn:app", external_id="b2"),
             measurement(phq, phq9(0, 19)), measurement(phq, phq9(0, 20)),
             measurement(gad, gad7(14)), measurement(gad, gad7(15))]
    results = (await c.post("/v1/measurements/batch", json={"measurements": items})).json()["results"]
    assert [r["status"] for r in results] == ["created"] * 6
    got = [(r["safety_alert"]["severity"], r["safety_alert"]["trigger"]["kind"]) if r.get("safety_alert") else None
           for r in results]
    assert got == [("high", "item9"), ("urgent", "item9"), None, ("high", "severe_total"), None,
                   ("high", "severe_total")]
    # A correction sent as a batch duplicate is not stored (CONTRACT.md section 4): no alert, value unchanged.
    dup = (await c.post("/v1/measurements/batch", json={"measurements": [
        measurement(phq, phq9(3, 8), source="urn:app", external_id="b1")]})).json()["results"][0]
    assert (dup["status"], dup.get("safety_alert")) == ("duplicate", None)
    assert (await c.get(f"/v1/measurements/{results[0]['id']}")).json()["items"][8] == 1
    # Corrected the documented way, it opens the urgent alert.
    put = await c.put("/v1/measurements", params={"external_id": "urn:app|b1"},
                      json=measurement(phq, phq9(3, 8)))
    assert put.json()["safety_alert"]["severity"] == "urgent"


async def test_bulk_import_opens_alerts_on_new_lines_and_on_corrections(c):
    marker = await instrument_marker(c)

    async def run(*resources: dict) -> list[dict]:
        body = b"\n".join(orjson.dumps({"type": "measurement", "resource": r}) for r in resources)
        r = await c.post("/v1/bulk/import", content=body, headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        return [orjson.loads(line) for line in r.content.splitlines()]

    first = await run(measurement(marker, phq9(1, 6), source="urn:ehr", external_id="q1"),
                      measurement(marker, phq9(0, 3), source="urn:ehr", external_id="q2"))
    assert [r["status"] for r in first] == ["created", "created"]
    assert (first[0]["safety_alert"]["severity"], "safety_alert" in first[1]) == ("high", False)
    assert [a["severity"] for a in await alerts_of(c, first[0]["id"])] == ["high"]
    assert await alerts_of(c, first[1]["id"]) == []
    # A re-import of the same (source, external_id) updates the measurement: item 9 from 1 to 3.
    again = await run(measurement(marker, phq9(3, 8), source="urn:ehr", external_id="q1"),
                      measurement(marker, phq9(1, 4), source="urn:ehr", external_id="q2"))
    assert [r["status"] for r in again] == ["updated", "updated"]
    assert [r["safety_alert"]["severity"] for r in again] == ["urgent", "high"]  # each line's new alert
    assert [a["severity"] for a in await alerts_of(c, first[0]["id"])] == ["urgent", "high"]
    assert [a["severity"] for a in await alerts_of(c, first[1]["id"])] == ["high"]


async def test_fhir_create_opens_a_flag_of_the_severity_and_links_it(c):
    marker = await instrument_marker(c)
    pid = marker["client_id"]
    created = []
    for item9 in (1, 3):
        r = await c.post(f"{FHIR}/Observation", json=phq9_observation(pid, phq9(item9, item9 + 5)),
                         headers={"Content-Type": FHIR_JSON})
        assert r.status_code == 201, r.text
        validate(r.json())
        created.append(r.json())
    flags = {f["id"]: f for f in await all_pages(c, f"{FHIR}/Flag?patient={pid}")}
    assert len(flags) == 2
    for obs, (priority, severity) in zip(created, [("PM", "high"), ("PH", "urgent")], strict=True):
        (link,) = [e for e in obs["extension"] if e["url"].endswith("/observation-safety-alert")]
        flag = flags[link["valueReference"]["reference"].removeprefix("Flag/")]
        ext = next(e for e in flag["extension"] if e["url"] == "http://hl7.org/fhir/StructureDefinition/flag-priority")
        assert [cd["code"] for cd in ext["valueCodeableConcept"]["coding"]] == [priority, severity]
        assert _instant(flag["period"]["start"]) == _instant(obs["effectiveDateTime"])
        assert "item 9" in flag["code"]["text"]
        # The REST measurement is the same record, with the same alert.
        rest = (await c.get(f"/v1/measurements/{obs['id']}")).json()
        assert rest["safety_alert_ids"] == [flag["id"]]


async def test_graphql_update_is_the_same_service(c):
    marker = await instrument_marker(c)
    made = await gql(c, """mutation($c: UUID!, $m: UUID!, $i: [Int!]) {
        createMeasurement(input: {clientId: $c, markerId: $m, observedAt: "2026-11-20T09:30:00+01:00", items: $i})
        { id safetyAlert { severity trigger { kind item9 total band } } safetyAlertIds } }""",
                     {"c": marker["client_id"], "m": marker["id"], "i": phq9(1, 6)})
    m = made["data"]["createMeasurement"]
    assert m["safetyAlert"] == {"severity": "high", "trigger": {"kind": "item9", "item9": 1, "total": 6,
                                                                "band": "mild"}}
    fixed = await gql(c, """mutation($id: UUID!, $i: [Int!]) { updateMeasurement(id: $id, input: {items: $i})
        { safetyAlert { id severity } safetyAlertIds } }""", {"id": m["id"], "i": phq9(3, 8)})
    upd = fixed["data"]["updateMeasurement"]
    assert upd["safetyAlert"]["severity"] == "urgent"
    assert upd["safetyAlertIds"] == [*m["safetyAlertIds"], upd["safetyAlert"]["id"]]


async def test_a_changed_kind_opens_a_new_alert(c):
    marker = await instrument_marker(c)
    m = (await c.post("/v1/measurements", json=measurement(marker, phq9(0, 20)))).json()
    assert m["safety_alert"]["trigger"] == trigger("severe_total", 0, 20, "severe")

    async def correct(items: list[int]) -> dict | None:
        return (await c.patch(f"/v1/measurements/{m['id']}", json={"items": items})).json()["safety_alert"]

    assert (await correct(phq9(0, 22))) is None  # the same kind and severity
    to_item9 = await correct(phq9(1, 20))
    assert (to_item9["trigger"], to_item9["severity"]) == (trigger("item9", 1, 20, "severe"), "high")
    back = await correct(phq9(0, 21))
    assert back["trigger"]["kind"] == "severe_total"
    assert len(await alerts_of(c, m["id"])) == 3


@pytest.mark.parametrize(("instrument", "items", "expected"), [
    ("phq9", phq9(0, 19), None),
    ("phq9", phq9(0, 20), ("severe_total", "high", 0, 20, "severe")),
    ("phq9", phq9(0, 3), None),
    ("phq9", phq9(1, 3), ("item9", "high", 1, 3, "minimal")),
    ("phq9", phq9(2, 3), ("item9", "urgent", 2, 3, "minimal")),
    ("phq9", phq9(1, 24), ("item9", "high", 1, 24, "severe")),  # both hold: item9, the total kept
    ("phq9", phq9(3, 27), ("item9", "urgent", 3, 27, "severe")),
    ("gad7", gad7(14), None),
    ("gad7", gad7(15), ("severe_total", "high", None, 15, "severe")),
])
async def test_thresholds_at_their_boundaries(c, instrument, items, expected):
    marker = await instrument_marker(c, instrument)
    alert = (await c.post("/v1/measurements", json=measurement(marker, items))).json()["safety_alert"]
    if expected is None:
        assert alert is None
    else:
        kind, severity, item9, total, band = expected
        assert (alert["trigger"], alert["severity"]) == (trigger(kind, item9, total, band, instrument), severity)


async def test_an_alert_opened_by_a_correction_is_announced_in_the_outbox(db):
    async with Api.start(db, webhooks_allow_private_targets=True) as api:  # no dispatcher: nothing is sent
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        await subscribe(c, "http://127.0.0.1:9/hook", ["safety_alert.opened"])
        marker = await instrument_marker(c)
        m = (await c.post("/v1/measurements", json=measurement(marker, phq9(0, 5)))).json()
        alert = (await c.patch(f"/v1/measurements/{m['id']}", json={"items": phq9(2, 7)})).json()["safety_alert"]
        events = await api.db.fetch("SELECT event, record_id FROM webhook_outbox WHERE org_id = $1", org.id)
        assert [(e["event"], str(e["record_id"])) for e in events] == [("safety_alert.opened", alert["id"])]


async def test_a_refused_correction_opens_nothing(api, c):
    marker = await instrument_marker(c)
    m = (await c.post("/v1/measurements", json=measurement(marker, phq9(0, 5)))).json()
    bad = await c.patch(f"/v1/measurements/{m['id']}", json={"items": [*phq9(0, 5)[:8], 4]})
    assert bad.status_code == 422
    assert await api.db.fetchval("SELECT count(*) FROM safety_alerts") == 0
    other = await create(c, "outcome-markers")  # a frequency marker: never an alert
    assert (await c.post("/v1/measurements", json={"client_id": other["client_id"], "marker_id": other["id"],
                                                   "value": 50, "observed_at": NOW})).json()["safety_alert"] is None
