"""Bulk NDJSON import and export."""

from __future__ import annotations

import json

from tests.support.changes import drain
from tests.support.factories import create

ALL = "system/*.cruds"
NDJSON = {"Content-Type": "application/x-ndjson"}


def ndjson(lines: list[object]) -> bytes:
    return b"".join((json.dumps(x) if not isinstance(x, bytes) else x.decode()).encode() + b"\n" for x in lines)


def caseload(n: int) -> list[dict]:
    lines: list[dict] = []
    for i in range(n):
        mrn = {"external_id": f"urn:ehr:mrn|{i}"}
        lines += [
            {"type": "client", "resource": {"display_name": f"Client {i}",
                                            "identifiers": [{"system": "urn:ehr:mrn", "value": str(i)}]}},
            {"type": "strength", "resource": {"client_id": mrn, "domain": "relational", "kind": "skill",
                                              "label": "help-seeking",
                                              "external_ids": [{"system": "urn:ehr:str", "value": f"s{i}"}]}},
            {"type": "goal", "resource": {"client_id": mrn, "description": "Walk twice a week",
                                          "strength_ids": [{"external_id": f"urn:ehr:str|s{i}"}],
                                          "external_ids": [{"system": "urn:ehr:goal", "value": f"g{i}"}]}},
        ]
    return lines


async def test_import_resolves_references_reports_bad_lines_and_is_repeatable(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    lines: list[object] = caseload(3)
    lines.insert(2, b"{not json")
    lines.insert(4, {"type": "goal", "resource": {"client_id": {"external_id": "urn:ehr:mrn|999"},
                                                  "description": "x", "strength_ids": []}})
    lines.insert(5, {"type": "dragon", "resource": {}})
    r = await c.post("/v1/bulk/import", content=ndjson(lines), headers=NDJSON)
    assert r.status_code == 200, r.text
    results = [json.loads(x) for x in r.text.splitlines()]
    assert [x["line"] for x in results] == list(range(1, len(lines) + 1))
    bad = {x["line"]: x for x in results if x["status"] == "error"}
    assert set(bad) == {3, 5, 6}
    assert bad[3]["problem"]["code"] == "malformed_request"
    assert bad[5]["problem"]["errors"][0]["field"] == "client_id"
    assert bad[6]["problem"]["code"] == "unknown_type"
    assert sum(1 for x in results if x["status"] == "created") == 9
    goals = (await c.get("/v1/goals")).json()["data"]
    strengths = {s["id"] for s in (await c.get("/v1/strengths")).json()["data"]}
    assert len(goals) == 3
    assert all(g["strength_ids"][0] in strengths for g in goals)
    again = await c.post("/v1/bulk/import", content=ndjson(caseload(3)), headers=NDJSON)
    assert {json.loads(x)["status"] for x in again.text.splitlines()} == {"updated"}
    assert len((await c.get("/v1/clients")).json()["data"]) == 3


async def test_import_checks_scopes_per_line_and_media_type(api):
    org = await api.org()
    c = api.client(await api.token(org, "system/Client.c"))
    r = await c.post("/v1/bulk/import", content=ndjson(caseload(1)), headers=NDJSON)
    statuses = [json.loads(x)["status"] for x in r.text.splitlines()]
    assert statuses[0] == "created"
    assert json.loads(r.text.splitlines()[1])["problem"]["status"] == 403
    assert (await c.post("/v1/bulk/import", content=b"{}", headers={"Content-Type": "text/plain"})).status_code == 415


async def test_export_streams_every_live_record(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    await c.post("/v1/bulk/import", content=ndjson(caseload(4)), headers=NDJSON)
    gone = await create(c, "clients")
    await c.delete(f"/v1/clients/{gone['id']}")
    r = await c.get("/v1/bulk/export", params={"types": "client,strength"})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    docs = [json.loads(x) for x in r.text.splitlines()]
    assert sorted({d["type"] for d in docs}) == ["client", "strength"]
    assert sum(d["type"] == "client" for d in docs) == 4
    assert gone["id"] not in {d["resource"]["id"] for d in docs}
    other = api.client(await api.token(await api.org("Other"), ALL))
    assert (await other.get("/v1/bulk/export")).text == ""
    narrow = api.client(await api.token(org, "system/Client.rs"))
    assert (await narrow.get("/v1/bulk/export", params={"types": "strength"})).status_code == 403
    # export | import into another organization reproduces the records
    back = await other.post("/v1/bulk/import", content=ndjson([d for d in docs if d["type"] == "client"]),
                            headers=NDJSON)
    assert {json.loads(x)["status"] for x in back.text.splitlines()} == {"error"}  # ids and stamps are read-only


async def test_import_of_a_caseload_in_one_chunk_records_history_feed_and_safety_alerts(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    mrn = {"external_id": "urn:ehr:mrn|7"}
    phq = {"external_id": "urn:ehr:m|phq"}
    lines: list[object] = [
        {"type": "client", "resource": {"display_name": "C", "identifiers": [{"system": "urn:ehr:mrn", "value": "7"}]}},
        {"type": "outcome_marker", "resource": {"client_id": mrn, "kind": "instrument", "name": "PHQ-9",
                                                "instrument": "phq9",
                                                "external_ids": [{"system": "urn:ehr:m", "value": "phq"}]}},
        {"type": "measurement", "resource": {"client_id": mrn, "marker_id": phq, "observed_at": "2026-01-05T10:00:00Z",
                                             "items": [3, 3, 3, 3, 3, 3, 2, 0, 0]}},  # 20: severe, opens an alert
        {"type": "measurement", "resource": {"client_id": mrn, "marker_id": phq, "observed_at": "2026-01-06T10:00:00Z",
                                             "items": [1, 1, 1, 1, 1, 1, 1, 1]}},  # an item missing: a rule's error
        {"type": "measurement", "resource": {"client_id": mrn, "marker_id": phq, "observed_at": "2026-01-07T10:00:00Z",
                                             "items": [1, 1, 1, 1, 1, 1, 1, 1, 0]}},
        {"type": "strength", "resource": {"client_id": {"external_id": "urn:ehr:mrn|nobody"}, "domain": "relational",
                                          "kind": "skill", "label": "x"}},
        {"type": "goal", "resource": {"client_id": mrn, "description": "Walk", "strength_ids": []}},  # no strength
    ]
    r = await c.post("/v1/bulk/import", content=ndjson(lines), headers=NDJSON)
    results = [json.loads(x) for x in r.text.splitlines()]
    assert [x["status"] for x in results] == ["created", "created", "created", "error", "created", "error", "error"]
    assert results[3]["problem"]["code"] == "items_incomplete"
    assert results[5]["problem"]["code"] == "reference_not_found"
    assert results[6]["problem"]["code"] == "goal_without_strength"
    client_id = results[0]["id"]
    marker = (await c.get(f"/v1/outcome-markers/{results[1]['id']}")).json()
    assert (marker["client_id"], marker["max"]) == (client_id, 27)  # the rule's derived values are stored
    values = sorted([(await c.get(f"/v1/measurements/{results[i]['id']}")).json()["value"] for i in (2, 4)])
    assert values == [8, 20]
    alerts = (await c.get("/v1/safety-alerts")).json()["data"]
    assert [a["measurement_id"] for a in alerts] == [results[2]["id"]]
    made = {x["id"] for x in results if x.get("id")} | {alerts[0]["id"]}
    feed, _ = await drain(c, None, want=lambda seen: {e["id"] for e in seen} >= made)
    assert {e["id"] for e in feed} == made
    assert all(e["action"] == "created" and e["version"] == 1 for e in feed)
    history = (await c.get(f"/v1/history/clients/{client_id}")).json()
    assert [(v["version"], v["record"]["display_name"]) for v in history["data"]] == [(1, "C")]
    assert await api.db.fetchval("SELECT count(*) FROM external_ids WHERE org_id = $1", org.id) == 2


async def test_a_refused_identifier_falls_back_to_line_by_line_and_keeps_the_good_lines(api):
    org = await api.org()
    c = api.client(await api.token(org, "system/Client.c"))  # creates only: no upsert
    taken = await c.post("/v1/clients", json={"display_name": "Taken",
                                             "identifiers": [{"system": "urn:x", "value": "taken"}]})
    assert taken.status_code == 201
    lines = [
        {"type": "client", "resource": {"display_name": "A", "identifiers": [{"system": "urn:x", "value": "a"}]}},
        {"type": "client", "resource": {"display_name": "B", "identifiers": [{"system": "urn:x", "value": "taken"}]}},
        {"type": "client", "resource": {"display_name": "C"}},
        {"type": "client", "resource": {"display_name": "D", "identifiers": [{"system": "urn:x", "value": "b"},
                                                                            {"system": "urn:x", "value": "a"}]}},
    ]
    r = await c.post("/v1/bulk/import", content=ndjson(lines), headers=NDJSON)
    results = [json.loads(x) for x in r.text.splitlines()]
    assert [x["status"] for x in results] == ["created", "error", "created", "error"]
    assert results[1]["problem"]["status"] == 409
    assert results[3]["problem"]["status"] == 409
    names = sorted(x["display_name"] for x in (await api.client(await api.token(org, ALL)).get("/v1/clients"))
                   .json()["data"])
    assert names == ["A", "C", "Taken"]


async def test_a_database_refusal_in_a_chunk_falls_back_to_savepoints_per_line(api):
    org = await api.org()
    c = api.client(await api.token(org, "system/Client.c system/OutcomeMarker.c system/Measurement.c"))
    mrn, m = {"external_id": "urn:x|1"}, {"external_id": "urn:m|1"}
    reading = {"client_id": mrn, "marker_id": m, "value": 3, "observed_at": "2026-01-05T10:00:00Z",
               "source": "phone", "external_id": "r1"}
    lines = [
        {"type": "client", "resource": {"display_name": "A", "identifiers": [{"system": "urn:x", "value": "1"}]}},
        {"type": "outcome_marker", "resource": {"client_id": mrn, "kind": "frequency", "name": "walks", "min": 0,
                                                "max": 14, "external_ids": [{"system": "urn:m", "value": "1"}]}},
        {"type": "measurement", "resource": reading},
        {"type": "measurement", "resource": {**reading, "value": 4}},  # the same (source, external_id): unique index
        {"type": "measurement", "resource": {**reading, "external_id": "r2"}},
    ]
    r = await c.post("/v1/bulk/import", content=ndjson(lines), headers=NDJSON)
    results = [json.loads(x) for x in r.text.splitlines()]
    assert [x["status"] for x in results] == ["created", "created", "created", "error", "created"]
    assert results[3]["problem"]["status"] == 409
    stored = {x["external_id"]: x["value"] for x in (await api.client(await api.token(org, ALL))
                                                     .get("/v1/measurements")).json()["data"]}
    assert stored == {"r1": 3, "r2": 3}


async def test_identifiers_postgresql_cannot_store_are_line_errors_not_a_failed_chunk(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    lines = [
        {"type": "client", "resource": {"display_name": "A", "identifiers": [{"system": "urn:x", "value": "a\u0000"}]}},
        b'{"type": "client", "resource": {"display_name": "B", '
        b'"identifiers": [{"system": "urn:x", "value": "\\ud800"}]}}',
        {"type": "strength", "resource": {"client_id": {"external_id": "urn:x|\u0000"}, "domain": "relational",
                                          "kind": "skill", "label": "x"}},
        b'{"type": "strength", "resource": {"client_id": {"external_id": "urn:x|\\udfff"}, "domain": "relational", '
        b'"kind": "skill", "label": "x"}}',
        {"type": "measurement", "resource": {"client_id": "00000000-0000-0000-0000-000000000000",
                                             "marker_id": "00000000-0000-0000-0000-000000000000", "value": 1,
                                             "observed_at": "2026-01-05T10:00:00Z", "source": "p\u0000",
                                             "external_id": "e"}},
        {"type": "client", "resource": {"display_name": "C"}},
    ]
    r = await c.post("/v1/bulk/import", content=ndjson(lines), headers=NDJSON)
    assert r.status_code == 200
    results = [json.loads(x) for x in r.text.splitlines()]
    assert [x["status"] for x in results] == ["error"] * 5 + ["created"]
    assert all(x["problem"]["status"] == 422 for x in results[:5])
