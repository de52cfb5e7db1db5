"""Bulk NDJSON import and export."""

from __future__ import annotations

import json

from tests.factories import create

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
