"""The audit trail: every read and write of client data, and every refusal, is one append-only row."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.support.audit import events
from tests.support.factories import create
from tests.support.harness import APP_ROLE


async def test_reading_a_clients_strengths_leaves_one_event_naming_the_reader(api):
    org = await api.org("A")
    writer = api.client(await api.token(org, "system/*.cruds"))
    strength = await create(writer, "strengths")
    client_id = uuid.UUID(strength["client_id"])
    reader_token = await api.token(org, "system/Strength.rs")
    reader = api.client(reader_token)
    before = await api.db.fetchval("SELECT count(*) FROM audit_events")

    resp = await reader.get(f"/v1/strengths?client_id={client_id}", headers={"X-Request-Id": "req-123"})
    assert resp.status_code == 200
    assert resp.json()["data"]
    assert resp.headers["x-request-id"] == "req-123"

    after = await events(api)
    new = after[before:]
    assert len(new) == 1, new
    event = new[0]
    app_id = (await api.app.state.ctx.tokens.verify(reader_token, check_revocation=False)).app_id
    assert event["app_id"] == app_id
    assert event["org_id"] == org.id
    assert event["action"] == "search"
    assert event["resource_type"] == "Strength"
    assert event["outcome"] == "success"
    assert event["resource_ids"] == [uuid.UUID(strength["id"])]
    assert event["client_ids"] == [client_id]
    assert event["request_id"] == "req-123"
    assert event["method"] == "GET"


async def test_a_write_and_its_audit_row_commit_together(api):
    org = await api.org("A")
    c = api.client(await api.token(org, "system/*.cruds"))
    client = await create(c, "clients")
    rows = await events(api, org.id, action="create", resource_type="Client")
    assert [r["resource_ids"] for r in rows] == [[uuid.UUID(client["id"])]]
    assert rows[0]["status_code"] is None
    assert rows[0]["outcome"] == "success"


async def test_a_refused_read_of_another_orgs_id_leaves_one_event(api):
    a, b = await api.org("A"), await api.org("B")
    theirs = await create(api.client(await api.token(b, "system/*.cruds")), "strengths")
    token_a = await api.token(a, "system/Strength.rs")
    before = len(await events(api))
    resp = await api.client(token_a).get(f"/v1/strengths/{theirs['id']}")
    assert resp.status_code == 404
    new = (await events(api))[before:]
    assert len(new) == 1, new
    event = new[0]
    assert event["org_id"] == a.id
    assert event["outcome"] == "not_found"
    assert event["status_code"] == 404
    assert event["resource_type"] == "Strength"
    assert event["resource_ids"] == [uuid.UUID(theirs["id"])]
    assert event["action"] == "read"
    assert event["request_id"] == resp.headers["x-request-id"]


async def test_unauthenticated_and_forbidden_attempts_are_recorded(api):
    org = await api.org("A")
    before = len(await events(api))
    rid = uuid.uuid4()
    assert (await api.http.get(f"/v1/clients/{rid}")).status_code == 401
    narrow = api.client(await api.token(org, "system/Goal.rs"))
    assert (await narrow.get(f"/v1/clients/{rid}")).status_code == 403
    new = (await events(api))[before:]
    assert [(e["outcome"], e["status_code"], e["action"]) for e in new] == [
        ("denied", 401, "denied"), ("denied", 403, "denied")]
    assert new[0]["org_id"] is None
    assert new[1]["org_id"] == org.id
    assert new[1]["resource_ids"] == [rid]


async def test_audit_events_are_listed_with_filters_under_the_audit_scope(api):
    org, other = await api.org("A"), await api.org("B")
    c = api.client(await api.token(org, "system/*.cruds"))
    strength = await create(c, "strengths")
    await create(api.client(await api.token(other, "system/*.cruds")), "clients")
    assert (await c.get(f"/v1/strengths/{strength['id']}")).status_code == 200
    auditor = api.client(await api.token(org, "system/AuditEvent.s"))
    page = (await auditor.get(f"/v1/audit-events?client_id={strength['client_id']}&action=read")).json()
    assert [e["resource_ids"] for e in page["data"]] == [[strength["id"]]]
    everything = (await auditor.get("/v1/audit-events?limit=500")).json()["data"]
    assert everything
    assert all(strength["client_id"] in e["client_ids"] for e in everything)
    first = await auditor.get("/v1/audit-events?limit=1")
    assert first.json()["next_cursor"]
    assert 'rel="next"' in first.headers["link"]
    clinician = api.client(await api.token(org, "system/Client.cruds system/Strength.cruds"))
    assert (await clinician.get("/v1/audit-events")).status_code == 403


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET outcome = 'success'",
    "DELETE FROM audit_events",
    "TRUNCATE audit_events",
])
async def test_the_service_role_cannot_change_or_remove_audit_rows(api, statement):
    org = await api.org("A")
    c = api.client(await api.token(org, "system/*.cruds"))
    await create(c, "clients")
    conn = await api.db.connect(APP_ROLE)
    try:
        await conn.execute("SELECT set_config('app.org_id', $1, false)", str(org.id))
        assert await conn.fetchval("SELECT count(*) FROM audit_events") >= 1  # it can read its own
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()
    # not even the owner can rewrite history
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api.db.fetch("UPDATE audit_events SET outcome = 'error'")


async def test_graphql_reads_are_audited_as_reads_and_its_writes_as_writes(api):
    org = await api.org("A")
    c = api.client(await api.token(org, "system/*.cruds"))
    strength = await create(c, "strengths")
    before = await api.db.fetchval("SELECT count(*) FROM audit_events")

    resp = await c.post("/graphql", json={"query": "query($id: UUID!) { strength(id: $id) { label client { id } } }",
                                          "variables": {"id": strength["id"]}})
    assert resp.status_code == 200, resp.text
    assert "errors" not in resp.json(), resp.text
    read = (await events(api))[before:]
    assert {(r["resource_type"], r["action"]) for r in read} == {("Strength", "read"), ("Client", "read")}, read

    resp = await c.post("/graphql", json={
        "query": "mutation($in: ClientCreateInput!) { createClient(input: $in) { id } }",
        "variables": {"in": {"displayName": "Bea"}}})
    assert resp.status_code == 200, resp.text
    assert "errors" not in resp.json(), resp.text
    wrote = (await events(api))[before + len(read):]
    assert [(r["resource_type"], r["action"]) for r in wrote] == [("Client", "create")], wrote
