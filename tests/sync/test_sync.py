"""EHR sync: upsert by identifier that never duplicates, and a change feed that never skips."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from service.auth.principal import Principal
from service.auth.scopes import parse_scopes
from service.collections import service
from service.collections.registry import REGISTRY
from service.db import make_engine, set_tenant
from tests.support.changes import drain
from tests.support.factories import body_for, create

ALL = "system/*.cruds"


async def test_put_by_identifier_creates_then_updates(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    body = {"display_name": "Rosa", "identifiers": [{"system": "urn:ehr:mrn", "value": "77"}]}
    first = await c.put("/v1/clients", params={"identifier": "urn:ehr:mrn|77"}, json=body)
    assert first.status_code == 201, first.text
    second = await c.put("/v1/clients", params={"identifier": "urn:ehr:mrn|77"},
                         json={**body, "display_name": "Rosa M."}, headers={"If-Match": 'W/"1"'})
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["version"] == 2
    stale = await c.put("/v1/clients", params={"identifier": "urn:ehr:mrn|77"}, json=body,
                        headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    # the identifier from the query is kept even when the body omits it
    s = await c.put("/v1/strengths", params={"external_id": "urn:ehr:str|S9"},
                    json=await body_for(c, "strengths", client_id=first.json()["id"]))
    assert s.status_code == 201
    assert s.json()["external_ids"] == [{"system": "urn:ehr:str", "value": "S9"}]


async def test_put_of_a_deleted_record_is_gone(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    r = await c.put("/v1/strengths", params={"external_id": "urn:x|1"}, json=await body_for(c, "strengths"))
    assert (await c.delete(f"/v1/strengths/{r.json()['id']}")).status_code == 204
    again = await c.put("/v1/strengths", params={"external_id": "urn:x|1"}, json=await body_for(c, "strengths"))
    assert again.status_code == 410


@pytest.mark.parametrize("collection", ["clients", "strengths", "goals", "measurements"])
async def test_ten_concurrent_puts_with_one_identifier_make_one_record(api, collection):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    body = await body_for(c, collection)
    param = "identifier" if collection == "clients" else "external_id"
    ident = f"urn:ehr|{uuid.uuid4().hex}"
    responses = await asyncio.gather(*[c.put(f"/v1/{collection}", params={param: ident}, json=body)
                                       for _ in range(10)])
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    table = collection.replace("-", "_")
    if collection == "measurements":
        source, ext = ident.split("|")
        n = await api.db.fetchval("SELECT count(*) FROM measurements WHERE source = $1 AND external_id = $2",
                                  source, ext)
    else:
        n = await api.db.fetchval(
            f"SELECT count(*) FROM {table} t JOIN external_ids e ON e.record_id = t.id AND e.value = $1",
            ident.split("|")[1])
    assert n == 1


async def test_change_feed_pages_every_change_once_with_versions(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    s = await create(c, "strengths")
    await c.patch(f"/v1/strengths/{s['id']}", json={"status": "confirmed", "evidence": ["Paid the rent on time"]})
    await c.delete(f"/v1/strengths/{s['id']}")
    seen, cursor = await drain(c, None, params={"limit": 2},
                               want=lambda es: sum(e["id"] == s["id"] for e in es) == 3)
    assert [(e["type"], e["action"], e["version"]) for e in seen if e["id"] == s["id"]] == [
        ("strength", "created", 1), ("strength", "updated", 2), ("strength", "deleted", 3)]
    assert {e["type"] for e in seen} == {"client", "strength"}
    only = (await c.get("/v1/changes", params={"types": "client"})).json()["data"]
    assert {e["type"] for e in only} == {"client"}
    narrow = api.client(await api.token(org, "system/Client.rs"))
    assert {e["type"] for e in (await narrow.get("/v1/changes")).json()["data"]} == {"client"}
    assert (await narrow.get("/v1/changes", params={"types": "strength"})).status_code == 403
    assert (await c.get("/v1/changes", params={"since": "garbage"})).status_code == 422
    empty = (await c.get("/v1/changes", params={"since": cursor})).json()
    assert empty["data"] == []
    assert empty["next_cursor"] == cursor


async def test_transactions_that_commit_out_of_order_are_never_skipped(api):
    """T1 starts writing first, T2 later; T2 commits first. A reader polling in between must not advance
    past T1's change, and must see both exactly once after T1 commits."""
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    client = await create(c, "clients")
    who = Principal(org_id=org.id, app_id="writer", subject="writer", scopes=parse_scopes(ALL))
    engine = make_engine(api.db.app_url, api.db.settings())
    coll = REGISTRY["strengths"]

    async def poll(cursor):
        page = (await c.get("/v1/changes", params={"types": "strength", **({"since": cursor} if cursor else {})}))
        return page.json()

    seen: list[str] = []
    cursor = None
    try:
        rounds = 5
        for _ in range(rounds):
            async with engine.connect() as t1, engine.connect() as t2:
                await t1.begin()
                await t2.begin()
                await set_tenant(t1, org.id, None)
                await set_tenant(t2, org.id, None)
                body = coll.create.model_validate(await body_for(c, "strengths", client_id=client["id"]))
                first = await service.create(t1, who, coll, body)  # T1 takes the lower transaction id
                second = await service.create(t2, who, coll, body)
                await t2.commit()  # ... but T2 commits first
                page = await poll(cursor)
                assert str(second["id"]) not in [e["id"] for e in page["data"]], "read past a running transaction"
                seen += [e["id"] for e in page["data"]]
                cursor = page["next_cursor"]
                await t1.commit()
            ids = {str(first["id"]), str(second["id"])}
            entries, cursor = await drain(c, cursor, params={"types": "strength"},
                                          want=lambda es, ids=ids: ids <= {e["id"] for e in es})
            seen += [e["id"] for e in entries]
            assert str(first["id"]) in seen
            assert str(second["id"]) in seen
    finally:
        await engine.dispose()
    assert len(seen) == len(set(seen)) == 2 * rounds


async def test_concurrent_writers_and_a_polling_reader_see_everything_once(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    client = await create(c, "clients")
    body = await body_for(c, "strengths", client_id=client["id"])
    done = asyncio.Event()
    seen: list[tuple[str, int]] = []

    async def writer(n: int) -> list[str]:
        ids = []
        for _ in range(n):
            r = await c.post("/v1/strengths", json=body)
            ids.append(r.json()["id"])
            await c.patch(f"/v1/strengths/{ids[-1]}", json={"status": "confirmed", "evidence": ["Paid the rent"]})
        return ids

    async def reader() -> None:
        cursor = None
        while not done.is_set():
            page = (await c.get("/v1/changes", params={"types": "strength", "limit": 7,
                                                       **({"since": cursor} if cursor else {})})).json()
            seen.extend((e["id"], e["version"]) for e in page["data"])
            cursor = page["next_cursor"]
            await asyncio.sleep(0)
        rest, _ = await drain(c, cursor, params={"types": "strength", "limit": 7},
                              want=lambda es: len(seen) + len(es) >= 60)
        seen.extend((e["id"], e["version"]) for e in rest)

    read = asyncio.create_task(reader())
    written = await asyncio.gather(*[writer(6) for _ in range(5)])
    done.set()
    await read
    ids = [i for batch in written for i in batch]
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted([(i, 1) for i in ids] + [(i, 2) for i in ids])


async def test_feed_entries_are_written_as_every_timestamp_and_audited_per_collection(api):
    """PostgreSQL writes the page: its entries must read exactly as the service writes JSON (orjson), a whole
    second included, and the audit row of each collection must name the records and clients it listed."""
    import orjson

    org = await api.org()
    c = api.client(await api.token(org, ALL))
    s = await create(c, "strengths")
    await api.db.fetch("UPDATE changes SET changed_at = '2026-03-01T12:00:00.5Z' WHERE record_id = $1",
                       uuid.UUID(s["client_id"]))
    await api.db.fetch("UPDATE changes SET changed_at = '2026-03-01T12:00:01Z' WHERE record_id = $1",
                       uuid.UUID(s["id"]))
    seen, _ = await drain(c, None, want=lambda es: {e["id"] for e in es} >= {s["id"], s["client_id"]})
    rows = {str(r["record_id"]): r for r in await api.db.fetch(
        "SELECT record_id, collection, action, version, changed_at FROM changes WHERE org_id = $1", org.id)}
    expected = [{"type": rows[e["id"]]["collection"].removesuffix("s"), "id": e["id"],
                 "action": rows[e["id"]]["action"], "version": rows[e["id"]]["version"],
                 "changed_at": orjson.loads(orjson.dumps(rows[e["id"]]["changed_at"]))} for e in seen]
    assert seen == expected
    assert {e["changed_at"] for e in seen} == {"2026-03-01T12:00:00.500000+00:00", "2026-03-01T12:00:01+00:00"}

    audited = await api.db.fetch("SELECT resource_type, resource_ids, client_ids FROM audit_events "
                                 "WHERE org_id = $1 AND method = 'GET' AND path = '/v1/changes'", org.id)
    by_type = {}
    for r in audited:
        ids, clients = by_type.setdefault(r["resource_type"], (set(), set()))
        ids.update(map(str, r["resource_ids"]))
        clients.update(map(str, r["client_ids"]))
    assert by_type["Strength"] == ({s["id"]}, {s["client_id"]})
    assert by_type["Client"][0] == {s["client_id"]}
