"""The domain rules of CONTRACT.md section 3: each a 422 naming the field, with nothing written."""

from __future__ import annotations

import uuid

import pytest

from tests.support.factories import NOW, body_for, create

ALL = "system/*.cruds"


async def _count(api, table: str) -> int:
    return int(await api.db.fetchval(f"SELECT count(*) FROM {table}"))


async def assert_rule(api, c, collection: str, body: dict, field: str, reason: str | None = None) -> None:
    table = collection.replace("-", "_")
    before = await _count(api, table), await _count(api, "history")
    r = await c.post(f"/v1/{collection}", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert field in [e["field"] for e in problem["errors"]], problem
    if reason:
        assert problem["code"] == reason or reason in [e["code"] for e in problem["errors"]], problem
    assert (await _count(api, table), await _count(api, "history")) == before


async def test_goal_without_strength(api, c):
    body = await body_for(c, "goals")
    body["strength_ids"] = []
    await assert_rule(api, c, "goals", body, "strength_ids", "goal_without_strength")
    del body["strength_ids"]
    await assert_rule(api, c, "goals", body, "strength_ids", "goal_without_strength")


async def test_goal_patch_cannot_drop_its_strengths(api, c):
    goal = await create(c, "goals")
    r = await c.patch(f"/v1/goals/{goal['id']}", json={"strength_ids": []})
    assert r.status_code == 422
    assert r.json()["code"] == "goal_without_strength"


async def test_milestone_without_completion_criteria(api, c):
    body = await body_for(c, "milestones")
    body["completion_criteria"] = "  "
    await assert_rule(api, c, "milestones", body, "completion_criteria", "milestone_without_criteria")
    del body["completion_criteria"]
    await assert_rule(api, c, "milestones", body, "completion_criteria", "milestone_without_criteria")


async def test_experiment_done_without_result(api, c):
    body = await body_for(c, "experiments", status="done")
    await assert_rule(api, c, "experiments", body, "result", "experiment_done_without_result")
    exp = await create(c, "experiments")
    r = await c.patch(f"/v1/experiments/{exp['id']}", json={"status": "done"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "result"


async def test_value_outside_marker_range(api, c):
    body = await body_for(c, "measurements", value=51)
    await assert_rule(api, c, "measurements", body, "value", "value_out_of_range")
    body["value"] = -1
    await assert_rule(api, c, "measurements", body, "value", "value_out_of_range")


async def test_timestamp_without_time_zone(api, c):
    body = await body_for(c, "measurements", observed_at="2026-11-20T09:30:00")
    await assert_rule(api, c, "measurements", body, "observed_at", "timezone_aware")
    body = await body_for(c, "strength-uses", occurred_at="2026-11-20T09:30:00")
    await assert_rule(api, c, "strength-uses", body, "occurred_at")


@pytest.mark.parametrize(("collection", "field", "target"), [
    ("goals", "strength_ids.0", "strengths"),
    ("exceptions", "strength_ids.0", "strengths"),
    ("milestones", "goal_id", "goals"),
    ("measurements", "marker_id", "outcome-markers"),
    ("strength-uses", "strength_id", "strengths"),
    ("experiments", "strength_id", "strengths"),
])
async def test_reference_to_another_clients_record(api, c, collection, field, target):
    theirs = await create(c, target)
    mine = await create(c, "clients")
    body = await body_for(c, collection, client_id=mine["id"])
    key = field.split(".")[0]
    body[key] = [theirs["id"]] if key.endswith("_ids") else theirs["id"]
    await assert_rule(api, c, collection, body, field, "reference_not_found")


async def test_reference_to_another_organizations_record_is_like_a_missing_one(api, c):
    other = api.client(await api.token(await api.org("Other"), ALL))
    theirs = await create(other, "strengths")
    body = await body_for(c, "goals")
    body["strength_ids"] = [theirs["id"]]
    r1 = await c.post("/v1/goals", json=body)
    body["strength_ids"] = [str(uuid.uuid4())]
    r2 = await c.post("/v1/goals", json=body)
    assert r1.status_code == r2.status_code == 422
    assert r1.json()["code"] == r2.json()["code"]
    body = await body_for(c, "strengths", client_id=theirs["client_id"])
    r3 = await c.post("/v1/strengths", json=body)
    assert r3.status_code == 422
    assert r3.json()["errors"][0]["field"] == "client_id"


async def test_goal_target_marker_must_be_the_clients(api, c):
    theirs = await create(c, "outcome-markers")
    body = await body_for(c, "goals")
    body["target"] = {"marker_id": theirs["id"], "comparator": ">=", "value": 3, "period": "P1W"}
    await assert_rule(api, c, "goals", body, "target.marker_id", "reference_not_found")


async def test_enums_are_checked(api, c):
    body = await body_for(c, "strengths", domain="magical")
    await assert_rule(api, c, "strengths", body, "domain", "enum")


async def test_safety_alerts_cannot_be_deleted(api, c):
    alert = await create(c, "safety-alerts")
    r = await c.delete(f"/v1/safety-alerts/{alert['id']}")
    assert r.status_code == 405
    assert "GET" in r.headers["allow"]
    resolved = await c.patch(f"/v1/safety-alerts/{alert['id']}",
                             json={"status": "resolved", "resolution_note": "Safety plan reviewed in session"})
    assert resolved.json()["resolved_at"] is not None
    assert resolved.json()["resolved_by"]


async def test_client_id_cannot_change(api, c):
    s = await create(c, "strengths")
    other = await create(c, "clients")
    r = await c.patch(f"/v1/strengths/{s['id']}", json={"client_id": other["id"]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "client_id"


async def test_instrument_measurements_are_scored(api, c):
    marker = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9")
    assert (marker["min"], marker["max"], marker["code"], marker["direction"]) == (0, 27, "44261-6",
                                                                                    "lower_is_better")
    base = {"client_id": marker["client_id"], "marker_id": marker["id"], "observed_at": NOW}
    ok = await c.post("/v1/measurements", json={**base, "items": [1, 1, 1, 1, 1, 1, 1, 1, 0]})
    assert ok.status_code == 201
    assert ok.json()["value"] == 8
    assert ok.json()["safety_alert"] is None
    await assert_rule(api, c, "measurements", {**base, "items": [1, 1, 1]}, "items", "items_incomplete")
    await assert_rule(api, c, "measurements", {**base, "items": [4, 1, 1, 1, 1, 1, 1, 1, 0]}, "items.0",
                      "item_out_of_range")
    await assert_rule(api, c, "measurements", {**base, "items": [1, 1, 1, 1, 1, 1, 1, 1, 0], "value": 9}, "value",
                      "value_mismatch")
    await assert_rule(api, c, "measurements", {**base, "value": 9}, "items", "items_required")


async def test_risk_measurement_opens_one_alert_in_the_response(api, c):
    marker = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9")
    r = await c.post("/v1/measurements", json={"client_id": marker["client_id"], "marker_id": marker["id"],
                                               "observed_at": NOW, "items": [0, 0, 0, 0, 0, 0, 0, 0, 1]})
    assert r.status_code == 201
    alert = r.json()["safety_alert"]
    assert alert["status"] == "open"
    assert alert["measurement_id"] == r.json()["id"]
    assert "item 9" in alert["reason"]
    alerts = await c.get(f"/v1/safety-alerts?client_id={marker['client_id']}")
    assert [a["id"] for a in alerts.json()["data"]] == [alert["id"]]


async def test_measurement_keeps_its_offset(api, c):
    m = await create(c, "measurements", observed_at="2026-11-20T23:30:00-05:00")
    assert m["observed_at"] == "2026-11-20T23:30:00-05:00"
    got = await c.get(f"/v1/measurements/{m['id']}")
    assert got.json()["observed_at"] == "2026-11-20T23:30:00-05:00"


async def test_goal_with_a_behavioural_target(api, c):
    marker = await create(c, "outcome-markers")
    body = await body_for(c, "goals", client_id=marker["client_id"])
    body["target"] = {"marker_id": marker["id"], "comparator": ">=", "value": 3, "period": "P1W", "duration": "P4W"}
    r = await c.post("/v1/goals", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["target"]["marker_id"] == marker["id"]
    assert (await c.get(f"/v1/goals/{r.json()['id']}")).json()["target"] == r.json()["target"]
