"""The collection machinery, exercised on every collection: CRUD, ETags, history, 410, paging, filters."""

from __future__ import annotations

import uuid

import pytest

from tests.support.factories import COLLECTIONS, PATCHES, body_for, create

ALL = "system/*.cruds"


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_crud_history_and_gone(api, collection):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    r = await c.post(f"/v1/{collection}", json=await body_for(c, collection))
    assert r.status_code == 201, r.text
    rec = r.json()
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"/v1/{collection}/{rec['id']}"
    assert rec["version"] == 1

    got = await c.get(f"/v1/{collection}/{rec['id']}")
    assert got.status_code == 200
    assert got.json() == {k: v for k, v in rec.items() if k != "safety_alert"}
    assert got.headers["cache-control"] == "no-store"

    listed = await c.get(f"/v1/{collection}")
    assert rec["id"] in [x["id"] for x in listed.json()["data"]]

    p = await c.patch(f"/v1/{collection}/{rec['id']}", json=PATCHES[collection], headers={"If-Match": 'W/"1"'})
    assert p.status_code == 200, p.text
    assert p.json()["version"] == 2
    assert p.headers["etag"] == 'W/"2"'
    for key, value in PATCHES[collection].items():
        assert p.json()[key] == value

    stale = await c.patch(f"/v1/{collection}/{rec['id']}", json=PATCHES[collection], headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"

    d = await c.delete(f"/v1/{collection}/{rec['id']}", headers={"If-Match": 'W/"2"'})
    hist = await c.get(f"/v1/history/{collection}/{rec['id']}")
    assert hist.status_code == 200
    if collection == "safety-alerts":
        assert d.status_code == 405
        assert [h["action"] for h in hist.json()["data"]] == ["created", "updated"]
        return
    assert d.status_code == 204
    assert (await c.get(f"/v1/{collection}/{rec['id']}")).status_code == 410
    assert (await c.patch(f"/v1/{collection}/{rec['id']}", json=PATCHES[collection])).status_code == 410
    assert (await c.delete(f"/v1/{collection}/{rec['id']}")).status_code == 410
    listed = await c.get(f"/v1/{collection}")
    assert rec["id"] not in [x["id"] for x in listed.json()["data"]]
    versions = hist.json()["data"]
    assert [h["version"] for h in versions] == [1, 2, 3]
    assert [h["action"] for h in versions] == ["created", "updated", "deleted"]
    assert versions[2]["record"]["deleted_at"] is not None


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_paging_misses_nothing_while_records_are_added(api, collection):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    client = await create(c, "clients")
    scope = {} if collection == "clients" else {"client_id": client["id"]}
    made = [(await create(c, collection, **scope))["id"] for _ in range(5)]
    seen: list[str] = []
    url = f"/v1/{collection}?limit=2" + (f"&client_id={client['id']}" if scope else "")
    pages = 0
    while url:
        r = await c.get(url)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [x["id"] for x in page["data"]]
        if pages == 0:  # records added while paging appear later, never twice
            made.append((await create(c, collection, **scope))["id"])
        pages += 1
        if page["next_cursor"]:
            assert 'rel="next"' in r.headers["link"]
            url = r.headers["link"].split(">")[0].lstrip("<")
        else:
            url = ""
    expected = set(made) | ({client["id"]} if collection == "clients" else set())
    assert len(seen) == len(set(seen))
    assert expected <= set(seen)


@pytest.mark.parametrize("collection", [c for c in COLLECTIONS if c != "clients"])
async def test_filters(api, collection):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    mine = await create(c, collection)
    other = await create(c, collection)
    r = await c.get(f"/v1/{collection}?client_id={mine['client_id']}")
    assert [x["id"] for x in r.json()["data"]] == [mine["id"]]
    if "status" in mine:
        r = await c.get(f"/v1/{collection}?status={mine['status']}&client_id={other['client_id']}")
        assert [x["id"] for x in r.json()["data"]] == [other["id"]]
    since = (await c.get(f"/v1/{collection}/{other['id']}")).json()["updated_at"]
    r = await c.get(f"/v1/{collection}", params={"updated_since": since})
    assert mine["id"] not in [x["id"] for x in r.json()["data"]] or mine["updated_at"] >= since


async def test_external_id_filter_and_uniqueness(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    a = await create(c, "clients", identifiers=[{"system": "urn:ehr:mrn", "value": "A-1"}])
    await create(c, "clients", identifiers=[{"system": "urn:ehr:mrn", "value": "B-2"}])
    r = await c.get("/v1/clients", params={"identifier": "urn:ehr:mrn|A-1"})
    assert [x["id"] for x in r.json()["data"]] == [a["id"]]
    dup = await c.post("/v1/clients", json={"display_name": "X", "identifiers": [{"system": "urn:ehr:mrn",
                                                                                   "value": "A-1"}]})
    assert dup.status_code == 409
    assert (await c.get("/v1/clients", params={"identifier": "no-bar"})).status_code == 422


async def test_include_children(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    s = await create(c, "strengths")
    await create(c, "strengths", client_id=s["client_id"])
    g = await create(c, "goals", client_id=s["client_id"], strength_id=s["id"])
    r = await c.get(f"/v1/clients/{s['client_id']}?include=strengths,goals")
    assert r.status_code == 200
    assert len(r.json()["strengths"]) == 2
    assert [x["id"] for x in r.json()["goals"]] == [g["id"]]
    bad = await c.get(f"/v1/clients/{s['client_id']}?include=secrets")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "include"
    narrow = api.client(await api.token(org, "system/Client.r"))
    assert (await narrow.get(f"/v1/clients/{s['client_id']}?include=strengths")).status_code == 403


async def test_cursor_is_opaque_and_checked(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    assert (await c.get("/v1/clients?cursor=not-a-cursor")).status_code == 422
    assert (await c.get("/v1/clients?limit=501")).status_code == 422
    assert (await c.get("/v1/clients?limit=0")).status_code == 422


async def test_unknown_id_is_404_and_bad_id_is_422(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    assert (await c.get(f"/v1/strengths/{uuid.uuid4()}")).status_code == 404
    assert (await c.get("/v1/strengths/not-a-uuid")).status_code == 422


async def test_patch_replaces_external_ids(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    s = await create(c, "strengths", external_ids=[{"system": "urn:ehr", "value": "S-1"}])
    r = await c.patch(f"/v1/strengths/{s['id']}", json={"external_ids": [{"system": "urn:ehr", "value": "S-2"}]})
    assert r.status_code == 200, r.text
    assert (await c.get("/v1/strengths", params={"external_id": "urn:ehr|S-1"})).json()["data"] == []
    found = (await c.get("/v1/strengths", params={"external_id": "urn:ehr|S-2"})).json()["data"]
    assert [x["id"] for x in found] == [s["id"]]
    other = await create(c, "strengths", client_id=s["client_id"], external_ids=[{"system": "urn:ehr", "value": "S-1"}])
    assert other["external_ids"] == [{"system": "urn:ehr", "value": "S-1"}]
