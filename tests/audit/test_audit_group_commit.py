"""A read's audit row is committed by the group commit (service.audit.commits) when no statement of the read writes
it (a read by id on a pinned connection, or a GraphQL query of one root field, does): durably, before the response
leaves, shared with the reads that arrive meanwhile, under each organization's own tenant setting; a read whose row
cannot be committed is not answered with data. Writes keep their row in their own transaction."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from service.audit.commits import for_engine
from tests.support.audit import events
from tests.support.factories import create
from tests.support.harness import OWNER_ROLE


async def _reader(api, org, n):
    writer = api.client(await api.token(org, "system/*.cruds"))
    clients = [await create(writer, "clients") for _ in range(n)]
    return api.client(await api.token(org, "system/Client.rs system/Strength.rs")), clients


async def test_each_reads_row_is_committed_before_its_response_and_reads_share_commits(api):
    """GraphQL reads of two root fields (a read by id, or of one root field, writes its rows in its own statement)."""
    a, b = await api.org("A"), await api.org("B")
    reader_a, clients_a = await _reader(api, a, 12)
    reader_b, clients_b = await _reader(api, b, 12)
    group = for_engine(api.app.state.ctx.engine)
    before = group.commits
    # Read by another connection (the test's own, as the owner) the moment each response arrives: the row is
    # already committed, with what that response disclosed.
    probe = await asyncpg.create_pool(api.db.dsn(OWNER_ROLE), min_size=1, max_size=4)
    missing = []
    query = "query($id: UUID!) { one: client(id: $id) { id } again: client(id: $id) { displayName } }"

    async def read(reader, client, org):
        rid = uuid.uuid4().hex
        resp = await reader.post("/graphql", json={"query": query, "variables": {"id": client["id"]}},
                                 headers={"X-Request-Id": rid})
        assert resp.status_code == 200, resp.text
        assert "errors" not in resp.json(), resp.text
        row = await probe.fetchrow("SELECT org_id, resource_type, resource_ids, action, outcome FROM audit_events "
                                   "WHERE request_id = $1 AND resource_type = 'Client'", rid)
        if row is None or row["resource_ids"] != [uuid.UUID(client["id"])] or row["org_id"] != org.id:
            missing.append((rid, row))

    try:
        await asyncio.gather(*[read(reader_a, c, a) for c in clients_a], *[read(reader_b, c, b) for c in clients_b])
    finally:
        await probe.close()
    assert missing == []
    commits = group.commits - before
    assert 1 <= commits < 24, commits  # 24 reads of two organizations shared fewer commits than one each


async def test_a_read_whose_row_cannot_be_committed_is_not_answered_with_data(api):
    org = await api.org("A")
    reader, clients = await _reader(api, org, 1)
    url = f"/v1/clients/{clients[0]['id']}"
    assert (await reader.get(url)).status_code == 200
    await api.db.fetch("REVOKE INSERT ON audit_events FROM strengths_app")
    try:
        resp = await reader.get(url)
    except Exception as exc:  # noqa: BLE001 - the in-process transport re-raises the server error
        resp = exc
    finally:
        await api.db.fetch("GRANT INSERT ON audit_events TO strengths_app")
    assert getattr(resp, "status_code", 500) >= 500
    assert clients[0]["display_name"] not in getattr(resp, "text", "")
    assert (await reader.get(url)).status_code == 200  # the connection and the group commit recover


async def test_a_write_keeps_its_row_in_its_own_transaction(api):
    org = await api.org("A")
    writer = api.client(await api.token(org, "system/*.cruds"))
    group = for_engine(api.app.state.ctx.engine)
    before = group.commits
    client = await create(writer, "clients")
    assert group.commits == before
    assert [r["resource_ids"] for r in await events(api, org.id, action="create", resource_type="Client")] \
        == [[uuid.UUID(client["id"])]]


async def test_a_graphql_read_of_one_root_field_writes_its_rows_in_its_own_statement(api):
    """One root field: the statement that reads also writes the rows (no group commit), each type's ids and clients
    once, in the order read; two root fields: the rows by the group commit, one per type for the request."""
    org = await api.org("A")
    reader, clients = await _reader(api, org, 2)
    group = for_engine(api.app.state.ctx.engine)
    before = group.commits
    query = "{ clients(first: 5) { edges { node { id strengths { edges { node { id } } } } } } }"
    resp = await reader.post("/graphql", json={"query": query})
    assert resp.status_code == 200
    assert "errors" not in resp.json(), resp.text
    assert group.commits == before
    rows = await events(api, org.id, path="/graphql")
    assert [(r["resource_type"], r["action"], r["outcome"], r["status_code"]) for r in rows] == \
        [("Client", "read", "success", None)], rows  # no strengths: no Strength row
    ids = [uuid.UUID(c["id"]) for c in clients]
    assert rows[-1]["resource_ids"] == ids
    assert rows[-1]["client_ids"] == ids
    assert rows[-1]["request_id"] == resp.headers["x-request-id"]
    assert rows[-1]["method"] == "POST"
    two = "{ a: clients(first: 5) { edges { node { id } } } b: clients(first: 1) { edges { node { id } } } }"
    assert "errors" not in (await reader.post("/graphql", json={"query": two})).json()
    assert group.commits == before + 1
    rows = await events(api, org.id, path="/graphql")
    assert len(rows) == 2
    assert rows[-1]["resource_ids"] == ids


async def test_a_graphql_read_whose_rows_cannot_be_written_is_not_answered_with_data(api):
    org = await api.org("A")
    reader, clients = await _reader(api, org, 1)
    query = {"query": "{ clients(first: 5) { edges { node { displayName } } } }"}
    assert (await reader.post("/graphql", json=query)).status_code == 200
    await api.db.fetch("REVOKE INSERT ON audit_events FROM strengths_app")
    try:
        resp = await reader.post("/graphql", json=query)
    except Exception as exc:  # noqa: BLE001 - the in-process transport re-raises the server error
        resp = exc
    finally:
        await api.db.fetch("GRANT INSERT ON audit_events TO strengths_app")
    assert getattr(resp, "status_code", 500) >= 500 or "errors" in resp.json()
    assert clients[0]["display_name"] not in getattr(resp, "text", "")
    assert (await reader.post("/graphql", json=query)).status_code == 200
