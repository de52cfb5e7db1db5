"""A record read by id (``GET /v1/<collection>/<id>?include=...``) in one round trip: one statement on a pinned
connection (``service.db.PinnedTenants``) reads the record and its child lists, gated on the session's tenant being
the token's (``repository.tenant_guard``) and writes the read's audit rows, committed with it before the response (as
a GraphQL query of one root field writes them in its own statement). Through HTTP, against PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from service.collections.registry import REGISTRY
from service.db import driver
from tests.support.audit import audit_rows, events
from tests.support.factories import client_with, create
from tests.support.fastread import READER
from tests.support.gqlkit import ALL, one_of_each, pinned_session_holds, read_on_the_wire, statements_on_the_wire
from tests.support.harness import Api


async def test_a_read_is_one_statement_and_its_audit_rows_commit_before_the_response(api):
    org = await api.org("A")
    writer = api.client(await api.token(org, "system/*.cruds"))
    client, children = await client_with(writer)
    reader = api.client(await api.token(org, READER))
    url = f"/v1/clients/{client['id']}?include=strengths,goals"
    read = await read_on_the_wire(api, reader, url)
    resp, first, pinned, primary, rid = read.resp, read.first, read.pinned, read.primary, read.request_id
    assert resp.json() == first.json()
    assert resp.json()["strengths"] == sorted(resp.json()["strengths"], key=lambda s: s["id"])
    assert {s["id"] for s in children["strengths"]} <= {s["id"] for s in resp.json()["strengths"]}  # and the goal's
    assert len(pinned) == 1, pinned  # one round trip: the read, and its audit rows written by the same statement
    assert "app_org()" in pinned[0]
    assert "INSERT INTO audit_events" in pinned[0]
    assert primary == [], primary  # nothing left for the group commit
    # committed before the response arrived, one row per type, ids in the order read
    cid = uuid.UUID(client["id"])
    rows = await audit_rows(api, rid)
    assert [(r["resource_type"], r["resource_ids"], r["client_ids"], r["action"], r["outcome"]) for r in rows] == [
        ("Client", [cid], [cid], "read", "success"),
        ("Strength", [uuid.UUID(s["id"]) for s in resp.json()["strengths"]], [cid], "read", "success"),
        ("Goal", [uuid.UUID(g["id"]) for g in resp.json()["goals"]], [cid], "read", "success"),
    ]
    assert {r["org_id"] for r in rows} == {org.id}
    assert {r["path"] for r in rows} == {url.split("?")[0]}


async def test_pinned_and_transaction_reads_answer_and_audit_alike(api, db):
    """The same requests through an app with pinned reads and one without (DB_PINNED_POOL_SIZE=0): the same status,
    body and audit rows, for a live record with and without children, none, a deleted one, another organization's."""
    org, other = await api.org("A"), await api.org("B")
    writer = api.client(await api.token(org, "system/*.cruds"))
    client, _ = await client_with(writer)
    bare = await create(writer, "clients")
    gone = await create(writer, "clients")
    assert (await writer.delete(f"/v1/clients/{gone['id']}")).status_code == 204
    foreign = await create(api.client(await api.token(other, "system/*.cruds")), "clients")
    paths = [f"/v1/clients/{client['id']}?include=strengths,goals", f"/v1/clients/{client['id']}",
             f"/v1/clients/{bare['id']}?include=strengths", f"/v1/clients/{uuid.uuid4()}?include=strengths",
             f"/v1/clients/{gone['id']}?include=strengths", f"/v1/clients/{foreign['id']}?include=strengths"]
    answers = {}
    async with Api.start(db, db_pinned_pool_size=0) as plain:
        assert plain.app.state.ctx.pinned is None
        for name, app in (("pinned", api), ("plain", plain)):
            reader = app.client(await app.token(org, READER))
            await reader.get(paths[0])  # the token is known not revoked from here on
            for path in paths:
                rid = uuid.uuid4().hex
                resp = await reader.get(path, headers={"X-Request-Id": rid})
                rows = [{k: v for k, v in r.items() if k != "app_id"} for r in await audit_rows(api, rid)]
                answers[name, path] = (resp.status_code, resp.json(), resp.headers.get("etag"), rows)
    for path in paths:
        assert answers["pinned", path] == answers["plain", path], path
    assert [answers["pinned", p][0] for p in paths] == [200, 200, 200, 404, 410, 404]


async def test_one_connection_serves_each_tenant_its_own(db):
    """One pinned connection (pool of one) read by two organizations and a patient's app in turn, and its session's
    tenant changed behind the service's back: every answer is the asker's own, every audit row is written once,
    in the asker's organization."""
    async with Api.start(db, db_pinned_pool_size=1, db_max_overflow=0) as api:
        a, b = await api.org("A"), await api.org("B")
        made = {}
        for org in (a, b):
            writer = api.client(await api.token(org, "system/*.cruds"))
            made[org.name] = [await client_with(writer, ("strengths",)) for _ in range(2)]
        (ca, _), (ca2, _) = made["A"]
        (cb, _), _ = made["B"]
        readers = {"A": api.client(await api.token(a, READER)), "B": api.client(await api.token(b, READER)),
                   "patient": api.client(await api.token(a, "patient/Client.r patient/Strength.s",
                                                         patient=uuid.UUID(ca["id"])))}
        asks = [("A", ca, 200), ("B", cb, 200), ("patient", ca, 200), ("patient", ca2, 404), ("A", ca2, 200),
                ("B", ca, 404), ("A", cb, 404)]
        for _ in range(2):  # the second round: every token known not revoked, every read on the pinned connection
            for who, client, status in asks:
                rid = uuid.uuid4().hex
                resp = await readers[who].get(f"/v1/clients/{client['id']}?include=strengths",
                                              headers={"X-Request-Id": rid})
                assert resp.status_code == status, (who, client["id"], resp.text)
                if status == 200:
                    assert resp.json()["display_name"] == client["display_name"]
                    rows = await audit_rows(api, rid)
                    assert [r["resource_type"] for r in rows] == ["Client", "Strength"]
                    assert {r["org_id"] for r in rows} == {a.id if who != "B" else b.id}

        await pinned_session_holds(api, b.id)  # behind the service's back: the connection's session holds B
        rid = uuid.uuid4().hex
        with statements_on_the_wire(api.app.state.ctx.pinned.engine) as sent:
            resp = await readers["A"].get(f"/v1/clients/{ca['id']}?include=strengths", headers={"X-Request-Id": rid})
            await asyncio.sleep(0)
        assert resp.status_code == 200
        assert resp.json()["id"] == ca["id"]
        # the read found B's tenant and answered nothing; the tenant set; the read again
        assert ["set_config('app.org_id', $1, false)" in q for q in sent] == [False, True, False]
        assert "app_org()" in sent[0]
        assert sent[0] == sent[2]
        rows = await audit_rows(api, rid)
        assert [(r["resource_type"], r["org_id"]) for r in rows] == [("Client", a.id), ("Strength", a.id)]


async def test_a_token_without_the_child_scope_or_from_another_organization_is_refused(api):
    org, other = await api.org("A"), await api.org("B")
    writer = api.client(await api.token(org, "system/*.cruds"))
    client, _ = await client_with(writer, ("strengths",))
    url = f"/v1/clients/{client['id']}?include=strengths"
    no_child = api.client(await api.token(org, "system/Client.r"))
    foreign = api.client(await api.token(other, READER))
    for _ in range(2):  # the token's first use (a transaction), then pinned
        resp = await no_child.get(url)
        assert resp.status_code == 403
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert client["display_name"] not in resp.text
        resp = await foreign.get(url)
        assert resp.status_code == 404
        assert client["display_name"] not in resp.text
    assert await events(api, outcome="success", action="read") == []


async def test_a_graphql_query_of_one_root_field_is_one_statement_and_checks_the_tenant_too(db):
    async with Api.start(db, db_pinned_pool_size=1) as api:
        a, b = await api.org("A"), await api.org("B")
        client, _ = await client_with(api.client(await api.token(a, "system/*.cruds")), ("strengths",))
        reader = api.client(await api.token(a, "system/Client.rs system/Strength.rs"))
        query = {"query": "query($id: UUID!) { client(id: $id) { displayName strengths { edges { node { id } } } } }",
                 "variables": {"id": client["id"]}}
        for _ in range(2):  # the token's first use (a transaction), then the pinned connection takes the tenant
            assert (await reader.post("/graphql", json=query)).json()["data"]["client"]["displayName"]
        ctx = api.app.state.ctx
        await pinned_session_holds(api, b.id)  # behind the service's back: organization B
        rid = uuid.uuid4().hex
        with statements_on_the_wire(ctx.pinned.engine) as pinned, statements_on_the_wire(ctx.engine) as primary:
            resp = await reader.post("/graphql", json=query, headers={"X-Request-Id": rid})
            await asyncio.sleep(0)
        assert resp.json()["data"]["client"]["displayName"] == client["display_name"]
        assert primary == []
        assert ["INSERT INTO audit_events" in q for q in pinned] == [True, False, True]  # B's: nothing; set; again
        rows = await audit_rows(api, rid)
        assert [(r["resource_type"], r["org_id"]) for r in rows] == [("Client", a.id), ("Strength", a.id)]


async def test_a_pinned_connection_plans_a_statement_once(db):
    """A pinned connection keeps one generic plan per statement (``PINNED_SESSION_SETTINGS``): a compiled GraphQL
    query sent again and again is not planned again each time, as PostgreSQL's default plan cache mode did for the
    dashboard (a custom plan per execution). The other connections keep the default."""
    async with Api.start(db, db_pinned_pool_size=1) as api:
        org = await api.org("A")
        clients = [(await client_with(api.client(await api.token(org, "system/*.cruds")), ("strengths",)))[0]
                   for _ in range(3)]
        reader = api.client(await api.token(org, "system/Client.rs system/Strength.rs"))
        query = "query($id: UUID!) { client(id: $id) { displayName strengths { edges { node { id } } } } }"
        for _ in range(3):
            for client in clients:
                resp = await reader.post("/graphql", json={"query": query, "variables": {"id": client["id"]}})
                assert resp.json()["data"]["client"]["displayName"] == client["display_name"]
        ctx = api.app.state.ctx
        async with ctx.pinned.engine.connect() as conn:  # the pool's one connection: the one that answered
            raw = await driver(conn)
            assert await raw.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
            plans = await raw.fetch("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                                    "WHERE statement LIKE '%app_org()%' AND statement LIKE '%FROM strengths%' "
                                    "AND statement NOT LIKE '%pg_prepared_statements%'")
        assert len(plans) == 1, plans
        assert plans[0]["custom_plans"] == 0
        assert plans[0]["generic_plans"] >= 8  # (the token's first read may go by a transaction)
        async with ctx.engine.connect() as conn:
            assert await (await driver(conn)).fetchval("SHOW plan_cache_mode") == "auto"


async def test_behind_pgbouncer_reads_open_a_transaction(db):
    """With DB_STATEMENT_CACHE_SIZE set (PgBouncer in transaction mode) no connection keeps a tenant."""
    async with Api.start(db, db_statement_cache_size=0) as api:
        assert api.app.state.ctx.pinned is None
        org = await api.org("A")
        client, _ = await client_with(api.client(await api.token(org, "system/*.cruds")), ("strengths",))
        reader = api.client(await api.token(org, READER))
        for _ in range(2):
            resp = await reader.get(f"/v1/clients/{client['id']}?include=strengths")
            assert resp.status_code == 200
            assert len(resp.json()["strengths"]) == 1


async def test_every_included_list_is_written_as_the_list_endpoint_writes_it(api):
    """A client with one record of every kind (a measurement with its safety alert among them), read with every
    ?include=: each embedded list is, key order and number formats included, what ``GET /v1/<child>?client_id=``
    answers for that client (the list statement and the Python serializer), and the record what it answers alone."""
    org = await api.org("A")
    ids = await one_of_each(api, org)
    c = api.client(await api.token(org, ALL))
    marker = (await c.post("/v1/outcome-markers", json={"client_id": ids["clients"], "kind": "instrument",
                                                         "name": "PHQ-9", "instrument": "phq9"})).json()
    risky = await c.post("/v1/measurements", json={"client_id": ids["clients"], "marker_id": marker["id"],
                                                   "value": 12, "items": [1, 1, 1, 1, 1, 1, 1, 3, 2],
                                                   "observed_at": "2026-11-20T09:30:00+01:00"})
    assert risky.status_code == 201, risky.text
    coll = REGISTRY["clients"]
    names = [REGISTRY[n].key for n in coll.children]
    url = f"/v1/clients/{ids['clients']}?include={','.join(names)}"
    await c.get(url)  # the token's first use: a transaction; then pinned
    body = orjson.loads((await c.get(url)).content)
    alone = orjson.loads((await c.get(f"/v1/clients/{ids['clients']}")).content)
    assert {k: v for k, v in body.items() if k not in names} == alone
    for child_name in coll.children:
        key = REGISTRY[child_name].key
        listed = orjson.loads((await c.get(f"/v1/{child_name}?client_id={ids['clients']}&limit=500")).content)["data"]
        assert orjson.dumps(body[key]) == orjson.dumps(listed), child_name
        assert body[key], child_name
    assert any(m["safety_alert_ids"] for m in body["measurements"])


@pytest.mark.parametrize("coll_name", list(REGISTRY))
async def test_every_record_reads_and_lists_as_its_write_answered_it(api, coll_name):
    """PostgreSQL writes the JSON of reads and lists (``service.collections.jsonread``), Python the answer of a write
    (``serialize``): for every collection the record read by id, and as an item of its list, is what its create
    answered, byte for byte once parsed and written again (so key order and number formats included). Text that
    JSON must escape, identifiers, whole and fractional numbers and an offset timestamp included; and each
    ``?include=`` list is what the child's list answers for that parent."""
    org = await api.org("A")
    answers: dict[str, bytes] = {}
    ids = await one_of_each(api, org, answers)
    c = api.client(await api.token(org, ALL))
    awkward = 'Zoë "Z" \\ O\'Neil\n\ttab \u2028 \U0001F600'
    patched = await c.patch(f"/v1/clients/{ids['clients']}", json={"display_name": awkward})
    assert patched.status_code == 200, patched.text
    put = await c.put(f"/v1/clients?identifier=urn:ehr|{uuid.uuid4()}", json={"display_name": awkward})
    assert put.status_code == 201, put.text
    answers["clients"] = patched.content
    written = [answers[coll_name]] + ([put.content] if coll_name == "clients" else [])
    marker = orjson.loads(answers["measurements"])["marker_id"]
    for value, at in ((2.5, "2026-01-12T20:30:15.250000-05:30"), (3, "2026-01-13T00:00:00+14:00")):
        made = await c.post("/v1/measurements", json={"client_id": ids["clients"], "marker_id": marker,
                                                      "value": value, "observed_at": at})
        assert made.status_code == 201, made.text
        if coll_name == "measurements":
            written.append(made.content)
    coll = REGISTRY[coll_name]

    async def listed(name: str, query: str) -> list[dict[str, Any]]:
        resp = await c.get(f"/v1/{name}?{query}&limit=500")
        assert resp.status_code == 200, resp.text
        return orjson.loads(resp.content)["data"]

    def same(a: Any, b: Any) -> bool:
        return orjson.dumps(a) == orjson.dumps(b)

    for answer in written:
        record = orjson.loads(answer)
        record.pop("safety_alert", None)  # a write's answer only (a measurement's alert, if it opened one)
        for _ in range(2):  # the token's first use in a transaction, then on the pinned connection
            alone = await c.get(f"/v1/{coll_name}/{record['id']}")
            assert alone.status_code == 200, alone.text
            assert alone.headers["etag"] == f'W/"{record["version"]}"'
            got = orjson.loads(alone.content)
            # a computed field may have moved since the write (a strength's uses_count, as uses were recorded)
            record = {k: got.get(k) if k in coll.computed else v for k, v in record.items()}
            assert same(got, record)
            scope = f"client_id={record['client_id']}" if coll.client_owned else "status=active"
            assert [same(item, record) for item in await listed(coll_name, scope) if item["id"] == record["id"]] \
                == [True]
        if coll.children:
            names = [REGISTRY[n].key for n in coll.children]
            body = orjson.loads((await c.get(f"/v1/{coll_name}/{record['id']}?include={','.join(names)}")).content)
            assert same({k: v for k, v in body.items() if k not in names}, record)
            for child_name, attr in coll.children.items():
                got = body[REGISTRY[child_name].key]
                assert same(got, await listed(child_name, f"{attr}={record['id']}")), child_name


async def test_a_pinned_connection_the_pool_invalidated_is_opened_again_by_the_next_read(db):
    """The pinned checkout takes an idle connection without a greenlet (``PinnedTenants._idle``); one the pool
    invalidated (as it does a broken one) must be opened again, which is I/O, so the next read takes it the usual
    way: it still answers, on a new session that takes the tenant before it reads, and its audit rows are written."""
    async with Api.start(db, db_pinned_pool_size=1, db_max_overflow=0) as api:
        org = await api.org("A")
        client, _ = await client_with(api.client(await api.token(org, "system/*.cruds")), ("strengths",))
        reader = api.client(await api.token(org, READER))
        url = f"/v1/clients/{client['id']}?include=strengths"
        for _ in range(2):  # the token's first use (a transaction), then the pinned connection
            assert (await reader.get(url)).status_code == 200
        engine = api.app.state.ctx.pinned.engine
        async with engine.connect() as conn:  # the pool's one connection
            before = await conn.scalar(text("SELECT pg_backend_pid()"))
            await conn.invalidate()
        rid = uuid.uuid4().hex
        with statements_on_the_wire(engine) as sent, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            resp = await reader.get(url, headers={"X-Request-Id": rid})
            await asyncio.sleep(0)
        assert resp.status_code == 200, resp.text
        # taken the usual way, not refused by SQLAlchemy first (which leaves its connect coroutine unawaited)
        assert not [w for w in caught if "never awaited" in str(w.message)]
        assert resp.json()["id"] == client["id"]
        # a new session: the tenant first, the read last (asyncpg asks for the types of the read's id array between)
        assert ["set_config('app.org_id', $1, false)" in q for q in sent] == [True] + [False] * (len(sent) - 1)
        assert "app_org()" in sent[-1]
        assert [r["resource_type"] for r in await audit_rows(api, rid)] == ["Client", "Strength"]
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != before
        for _ in range(3):  # and the connection it opened is taken without a greenlet again
            assert (await reader.get(url)).status_code == 200
