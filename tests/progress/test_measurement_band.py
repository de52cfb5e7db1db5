"""Measurements carry their severity ``band`` (CONTRACT.md section 4): computed in SQL from the instrument registry
(``Collection.computed``), on every read and every write's answer, and never stored in history."""

from __future__ import annotations

import json

from sqlalchemy import literal_column, select

from service.domain.instruments import INSTRUMENTS, band_case
from tests.support.factories import create
from tests.support.progress import instrument_marker, items

EXPECTED = {
    "phq9": {0: "minimal", 4: "minimal", 5: "mild", 9: "mild", 10: "moderate", 14: "moderate",
             15: "moderately_severe", 19: "moderately_severe", 20: "severe", 27: "severe"},
    "gad7": {0: "minimal", 4: "minimal", 5: "mild", 9: "mild", 10: "moderate", 14: "moderate", 15: "severe",
             21: "severe"},
}


async def test_the_sql_bands_are_the_registry_bands(api):
    """Every total of every instrument, in PostgreSQL, against the registry and the contract's names."""
    conn = await api.db.connect()
    try:
        for key, spec in INSTRUMENTS.items():
            for total in range(spec.max_total + 1):
                sql = select(band_case(literal_column(f"'{key}'"), literal_column(str(total))))
                got = await conn.fetchval(str(sql.compile(compile_kwargs={"literal_binds": True})))
                assert got == spec.band(total), (key, total)
                if total in EXPECTED[key]:
                    assert got == EXPECTED[key][total], (key, total)
    finally:
        await conn.close()


async def test_band_on_every_read_and_write(api, c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    phq9 = await instrument_marker(c, cid, "phq9")
    walks = await create(c, "outcome-markers", client_id=cid)
    created = await create(c, "measurements", client_id=cid, marker_id=phq9["id"], value=None,
                           items=items("phq9", 14), observed_at="2026-11-02T09:00:00+01:00")
    assert created["band"] == "moderate"
    assert created["observed_at"] == "2026-11-02T09:00:00+01:00"
    other = await create(c, "measurements", client_id=cid, marker_id=walks["id"], value=3)
    assert other["band"] is None
    assert (await c.get(f"/v1/measurements/{created['id']}")).json()["band"] == "moderate"
    listed = (await c.get("/v1/measurements", params={"client_id": cid})).json()["data"]
    assert {m["id"]: m["band"] for m in listed} == {created["id"]: "moderate", other["id"]: None}
    included = (await c.get(f"/v1/outcome-markers/{phq9['id']}?include=measurements")).json()["measurements"]
    assert [m["band"] for m in included] == ["moderate"]
    patched = await c.patch(f"/v1/measurements/{created['id']}", json={"items": items("phq9", 4), "value": 4})
    assert (patched.status_code, patched.json()["band"]) == (200, "minimal")
    put = await c.put("/v1/measurements", params={"external_id": "app|m-1"}, json={
        "client_id": cid, "marker_id": phq9["id"], "items": items("phq9", 16), "observed_at": "2026-11-03T09:00:00Z"})
    assert (put.status_code, put.json()["band"]) == (201, "moderately_severe")
    history = (await c.get(f"/v1/history/measurements/{created['id']}")).json()
    versions = history if isinstance(history, list) else history["data"]
    assert all("band" not in v["record"] for v in versions)  # derived, not stored


async def test_band_in_graphql_and_bulk_export(api, c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    gad7 = await instrument_marker(c, cid, "gad7")
    m = await create(c, "measurements", client_id=cid, marker_id=gad7["id"], value=None, items=items("gad7", 8))
    query = ("query($id: UUID!, $m: UUID!) { measurement(id: $id) { band } "
             "outcomeMarker(id: $m) { latestMeasurement { band } measurements { edges { node { band } } } } }")
    body = (await c.post("/graphql", json={"query": query, "variables": {"id": m["id"], "m": gad7["id"]}})).json()
    assert "errors" not in body, body
    assert body["data"]["measurement"]["band"] == "mild", body
    assert body["data"]["outcomeMarker"]["latestMeasurement"]["band"] == "mild"
    assert body["data"]["outcomeMarker"]["measurements"]["edges"][0]["node"]["band"] == "mild"
    r = await c.get("/v1/bulk/export", params={"types": "measurement"})
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    assert [line["resource"]["band"] for line in lines] == ["mild"]


async def test_band_reads_stay_in_the_organization(api, c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    phq9 = await instrument_marker(c, cid, "phq9")
    m = await create(c, "measurements", client_id=cid, marker_id=phq9["id"], value=None, items=items("phq9", 10))
    other = api.client(await api.token(await api.org("B"), "system/*.cruds"))
    assert (await other.get(f"/v1/measurements/{m['id']}")).status_code == 404
    assert (await other.get("/v1/measurements")).json()["data"] == []
    no_scope = api.client(await api.token(await api.org("C"), "system/Client.rs"))
    assert (await no_scope.get(f"/v1/measurements/{m['id']}")).status_code == 403
    assert (await api.client(None).get(f"/v1/measurements/{m['id']}")).status_code == 401
