"""Safety alerts themselves (CONTRACT.md section 3): an immutable trigger, the status moves, a clinician's alert,
the list order and its paging, the measurement filter, and who may see or change them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.factories import create
from tests.support.gqlkit import error_codes, gql
from tests.support.safety import ALL, alerts_of, instrument_marker, measurement, phq9, trigger

NOTE = "Safety plan reviewed with the client; crisis line number given"


async def opened(c, items: list[int] | None = None, **extra) -> tuple[dict, dict]:
    marker = await instrument_marker(c)
    m = (await c.post("/v1/measurements", json=measurement(marker, items or phq9(3, 8), **extra))).json()
    return m, m["safety_alert"]


async def _unchanged(c, alert: dict) -> None:
    now = (await c.get(f"/v1/safety-alerts/{alert['id']}")).json()
    assert now == alert
    assert len((await c.get(f"/v1/history/safety-alerts/{alert['id']}")).json()["data"]) == alert["version"]


async def test_every_immutable_field_refuses_a_patch(c):
    m, alert = await opened(c)
    other = (await c.post("/v1/measurements", json=measurement(
        {"client_id": m["client_id"], "id": m["marker_id"]}, phq9(0, 3)))).json()
    changes = {"reason": "nothing to see", "trigger": trigger("item9", 0, 3, "minimal"), "severity": "high",
               "measurement_id": other["id"], "observed_at": "2026-11-01T00:00:00Z"}
    for name, value in changes.items():
        r = await c.patch(f"/v1/safety-alerts/{alert['id']}", json={name: value})
        assert r.status_code == 422, (name, r.text)
        assert r.json()["code"] == "immutable_field"
        assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [(name, "immutable_field")]
    several = await c.patch(f"/v1/safety-alerts/{alert['id']}", json={"reason": "x", "severity": "high"})
    assert {e["field"] for e in several.json()["errors"]} == {"reason", "severity"}
    for name in changes:  # an explicit null is no way round it
        assert (await c.patch(f"/v1/safety-alerts/{alert['id']}", json={name: None})).status_code == 422
    await _unchanged(c, {k: v for k, v in alert.items()})
    # Repeating the stored value is not a change (a PUT of the whole record does so).
    same = await c.patch(f"/v1/safety-alerts/{alert['id']}", json={"reason": alert["reason"],
                                                                   "trigger": alert["trigger"]})
    assert same.status_code == 200, same.text


async def test_the_graphql_mutation_refuses_them_too(c):
    _, alert = await opened(c)
    body = await gql(c, """mutation($id: UUID!) { updateSafetyAlert(id: $id, input: {reason: "fine now"})
                           { reason } }""", {"id": alert["id"]})
    assert error_codes(body) == [("BAD_USER_INPUT", "immutable_field")]
    assert body["errors"][0]["extensions"]["errors"][0]["field"] == "reason"
    body = await gql(c, """mutation($id: UUID!) { updateSafetyAlert(id: $id, input: {severity: high}) { id } }""",
                     {"id": alert["id"]})
    assert error_codes(body) == [("BAD_USER_INPUT", "immutable_field")]
    await _unchanged(c, alert)


async def _to(c, alert_id: str, *path: dict) -> dict:
    for change in path:
        r = await c.patch(f"/v1/safety-alerts/{alert_id}", json=change)
        assert r.status_code == 200, r.text
    return (await c.get(f"/v1/safety-alerts/{alert_id}")).json()


ACK, RESOLVE, REOPEN = {"status": "acknowledged"}, {"status": "resolved", "resolution_note": NOTE}, {"status": "open"}
START = {"open": (), "acknowledged": (ACK,), "resolved": (RESOLVE,)}


@pytest.mark.parametrize(("start", "move"), [("open", ACK), ("open", RESOLVE), ("acknowledged", RESOLVE),
                                             ("resolved", REOPEN)])
async def test_allowed_status_moves(c, start, move):
    _, alert = await opened(c)
    before = await _to(c, alert["id"], *START[start])
    after = await _to(c, alert["id"], move)
    assert after["status"] == move["status"]
    assert after["version"] == before["version"] + 1
    if move is ACK:
        assert after["acknowledged_at"]
        assert after["acknowledged_by"]
        assert after["resolved_at"] is None
    elif move is RESOLVE:
        assert after["resolved_at"]
        assert after["resolved_by"]
        assert after["resolution_note"] == NOTE
        assert after["acknowledged_at"]  # resolving acknowledges too
    else:  # re-opening clears the resolution (and the acknowledgement: it waits for a clinician again)
        assert [after[k] for k in ("resolved_at", "resolved_by", "resolution_note", "acknowledged_at")] == [None] * 4
        assert after["opened_at"] > before["opened_at"]
    for name in ("reason", "trigger", "severity", "measurement_id", "observed_at"):
        assert after[name] == alert[name]


@pytest.mark.parametrize(("start", "change", "field", "code"), [
    ("acknowledged", REOPEN, "status", "invalid_status_move"),
    ("resolved", ACK, "status", "invalid_status_move"),
    ("open", {"status": "resolved"}, "resolution_note", "resolution_note_required"),
    ("acknowledged", {"status": "resolved", "resolution_note": "   "}, "resolution_note", "resolution_note_required"),
    ("open", {"resolution_note": NOTE}, "resolution_note", "resolution_note_without_resolving"),
    ("resolved", {"status": "open", "resolution_note": "Reopened"}, "resolution_note",
     "resolution_note_without_resolving"),
    ("resolved", {"resolution_note": ""}, "resolution_note", "resolution_note_required"),
    ("open", {"status": None}, "status", None),
])
async def test_refused_status_moves_change_nothing(c, start, change, field, code):
    _, alert = await opened(c)
    before = await _to(c, alert["id"], *START[start])
    r = await c.patch(f"/v1/safety-alerts/{alert['id']}", json=change)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    if code:
        assert r.json()["code"] == code
    await _unchanged(c, before)


async def test_a_clinician_raises_an_alert_by_hand(c):
    client = await create(c, "clients")
    r = await c.post("/v1/safety-alerts", json={"client_id": client["id"], "reason": "Disclosed a plan in session"})
    assert r.status_code == 201, r.text
    alert = r.json()
    assert (alert["status"], alert["severity"], alert["trigger"], alert["measurement_id"]) == ("open", "high",
                                                                                              None, None)
    assert abs(datetime.fromisoformat(alert["observed_at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    urgent = await create(c, "safety-alerts", client_id=client["id"], severity="urgent",
                          observed_at="2026-11-18T20:00:00+00:00")
    assert urgent["severity"] == "urgent"
    assert datetime.fromisoformat(urgent["observed_at"]) == datetime(2026, 11, 18, 20, tzinfo=UTC)
    # On a measurement: dated by it, its trigger kept, never below the trigger's severity.
    m, _ = await opened(c, phq9(3, 8))
    on = await create(c, "safety-alerts", client_id=m["client_id"], measurement_id=m["id"], severity="high",
                      reason="Reviewed the PHQ-9 with the client")
    assert (on["severity"], on["trigger"]) == ("urgent", trigger("item9", 3, 8, "mild"))
    assert datetime.fromisoformat(on["observed_at"]) == datetime.fromisoformat(m["observed_at"])
    assert (await c.get(f"/v1/measurements/{m['id']}")).json()["safety_alert_ids"][-1] == on["id"]
    # Refused: another date than the measurement's, a status (an alert opens open), another client's measurement.
    bad = await c.post("/v1/safety-alerts", json={"client_id": m["client_id"], "measurement_id": m["id"],
                                                  "reason": "x", "observed_at": "2026-01-01T00:00:00Z"})
    assert (bad.status_code, bad.json()["code"]) == (422, "observed_at_of_measurement")
    closed = await c.post("/v1/safety-alerts", json={"client_id": client["id"], "reason": "x", "status": "resolved"})
    assert closed.status_code == 422
    elsewhere = await c.post("/v1/safety-alerts", json={"client_id": client["id"], "measurement_id": m["id"],
                                                        "reason": "x"})
    assert elsewhere.json()["errors"][0]["code"] == "reference_not_found"


async def test_put_by_external_id_repeats_but_never_changes_the_trigger(c):
    client = await create(c, "clients")
    body = {"client_id": client["id"], "reason": "Raised by the EHR's risk screen"}
    url, ident = "/v1/safety-alerts", {"external_id": "urn:ehr:risk|77"}
    assert (await c.put(url, params=ident, json=body)).status_code == 201
    again = await c.put(url, params=ident, json=body)
    assert (again.status_code, again.json()["severity"]) == (200, "high")
    changed = await c.put(url, params=ident, json={**body, "reason": "Cleared"})
    assert (changed.status_code, changed.json()["code"]) == (422, "immutable_field")
    raised = await c.put(url, params=ident, json={**body, "severity": "urgent"})
    assert raised.json()["errors"][0]["field"] == "severity"


async def _alert(c, cid: str, severity: str, day: int) -> dict:
    return await create(c, "safety-alerts", client_id=cid, severity=severity,
                        observed_at=f"2026-11-{day:02d}T12:00:00+00:00")


async def test_lists_put_urgent_first_then_oldest_and_page_without_repeats(c):
    client = await create(c, "clients")
    cid = client["id"]
    made = [await _alert(c, cid, "high", 10), await _alert(c, cid, "urgent", 15), await _alert(c, cid, "high", 5),
            await _alert(c, cid, "urgent", 12)]
    expected = [made[3]["id"], made[1]["id"], made[2]["id"], made[0]["id"]]
    whole = (await c.get("/v1/safety-alerts", params={"client_id": cid})).json()["data"]
    assert [a["id"] for a in whole] == expected
    seen, cursor = [], None
    for page_no in range(10):
        r = await c.get("/v1/safety-alerts", params={"client_id": cid, "limit": 1, **({"cursor": cursor} if cursor
                                                                                        else {})})
        seen += [a["id"] for a in r.json()["data"]]
        if page_no == 0:  # written between pages, before the cursor: neither repeated nor skipped after it
            await _alert(c, cid, "urgent", 1)
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
        assert 'rel="next"' in r.headers["link"]
    assert seen == expected
    included = (await c.get(f"/v1/clients/{cid}", params={"include": "safety_alerts"})).json()["safety_alerts"]
    assert [a["id"] for a in included][1:] == expected
    assert [a["observed_at"][:10] for a in included] == ["2026-11-01", "2026-11-12", "2026-11-15", "2026-11-05",
                                                         "2026-11-10"]


async def test_graphql_lists_keep_the_order_and_page_with_their_cursors(c):
    client = await create(c, "clients")
    cid = client["id"]
    made = [await _alert(c, cid, "high", 3), await _alert(c, cid, "urgent", 9), await _alert(c, cid, "urgent", 2)]
    expected = [made[2]["id"], made[1]["id"], made[0]["id"]]
    root = """query($after: String) { safetyAlerts(first: 1, after: $after) {
                edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
    nested = """query($id: UUID!, $after: String) { client(id: $id) { safetyAlerts(first: 1, after: $after) {
                  edges { node { id } } pageInfo { hasNextPage endCursor } } } }"""
    for query, path in ((root, ("safetyAlerts",)), (nested, ("client", "safetyAlerts"))):
        seen, after = [], None
        for _ in range(5):
            data = (await gql(c, query, {"id": cid, "after": after}))["data"]
            for key in path:
                data = data[key]
            seen += [e["node"]["id"] for e in data["edges"]]
            after = data["pageInfo"]["endCursor"]
            if not data["pageInfo"]["hasNextPage"]:
                break
        assert seen == expected, path


async def test_measurement_id_filters_the_list(api, c):
    m1, a1 = await opened(c, phq9(1, 6))
    m2, a2 = await opened(c, phq9(2, 7))
    assert [a["id"] for a in await alerts_of(c, m1["id"])] == [a1["id"]]
    assert [a["id"] for a in await alerts_of(c, m2["id"])] == [a2["id"]]
    assert await alerts_of(c, "0190e4a2-0000-7000-8000-000000000000") == []
    org_b = await api.org("B")
    other = api.client(await api.token(org_b, ALL))
    assert await alerts_of(other, m1["id"]) == []  # another organization's measurement: nothing, as if absent
    gql_ids = await gql(c, """query($m: UUID) { safetyAlerts(measurementId: $m) { edges { node { id } } } }""",
                        {"m": m1["id"]})
    assert [e["node"]["id"] for e in gql_ids["data"]["safetyAlerts"]["edges"]] == [a1["id"]]


async def test_other_organizations_missing_scopes_and_no_token(api, org, c):
    m, alert = await opened(c)
    other = api.client(await api.token(await api.org("B"), ALL))
    for path in (f"/v1/safety-alerts/{alert['id']}", f"/v1/measurements/{m['id']}"):
        assert (await other.get(path)).status_code == 404
    assert (await other.patch(f"/v1/safety-alerts/{alert['id']}", json=ACK)).status_code == 404
    assert (await gql(other, "query($id: UUID!) { safetyAlert(id: $id) { id } }", {"id": alert["id"]}))["data"] == \
        {"safetyAlert": None}
    reader = api.client(await api.token(org, "system/SafetyAlert.rs"))
    refused = await reader.patch(f"/v1/safety-alerts/{alert['id']}", json=ACK)
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert "SafetyAlert.u" in refused.headers["www-authenticate"]
    assert (await reader.post("/v1/safety-alerts", json={"client_id": m["client_id"], "reason": "x"})
            ).status_code == 403
    measurer = api.client(await api.token(org, "system/Measurement.crus"))
    assert (await measurer.get("/v1/safety-alerts", params={"measurement_id": m["id"]})).status_code == 403
    body = await gql(reader, """mutation($id: UUID!) { updateSafetyAlert(id: $id, input: {status: acknowledged})
                               { id } }""", {"id": alert["id"]})
    assert error_codes(body) == [("FORBIDDEN", "insufficient_scope")]
    anonymous = api.client(None)
    assert (await anonymous.get("/v1/safety-alerts", params={"measurement_id": m["id"]})).status_code == 401
    assert (await anonymous.patch(f"/v1/safety-alerts/{alert['id']}", json=ACK)).status_code == 401
    await _unchanged(c, alert)


async def test_a_patient_token_sees_its_own_alerts_only(api, org, c):
    m, alert = await opened(c)
    other, _ = await opened(c)
    own = api.client(await api.token(org, "patient/SafetyAlert.rs patient/Measurement.rs", patient=m["client_id"]))
    assert (await own.get(f"/v1/safety-alerts/{alert['id']}")).status_code == 200
    assert (await own.get(f"/v1/measurements/{m['id']}")).json()["safety_alert_ids"] == [alert["id"]]
    assert (await own.get(f"/v1/measurements/{other['id']}")).status_code == 404
    assert await alerts_of(own, other["id"]) == []
