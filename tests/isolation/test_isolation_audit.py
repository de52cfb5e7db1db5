"""Audit events for patient-context tokens: only those about the token's patient (by the query and by a
row-level policy), under a scope of their own that no wildcard implies; every audit row has an organization
unless the one anonymous-refusal function wrote it."""

from __future__ import annotations

import uuid

import asyncpg
import orjson
import pytest

from service.auth.scopes import grant, parse_scopes, scope_allows
from tests.support.factories import create
from tests.support.harness import APP_ROLE


async def _two_patients_read(api):
    org = await api.org()
    staff = api.client(await api.token(org, "system/*.cruds"))
    ana, ben = await create(staff, "clients"), await create(staff, "clients")
    for client in (ana, ben):
        await create(staff, "strengths", client_id=client["id"])
    assert (await staff.get("/v1/strengths")).status_code == 200  # one event naming both
    assert (await staff.get(f"/v1/clients/{ben['id']}")).status_code == 200  # one naming Ben
    assert (await staff.get(f"/v1/clients/{ana['id']}")).status_code == 200  # one naming Ana
    return org, staff, ana, ben


async def test_a_patient_token_lists_only_events_about_its_patient(api):
    org, _staff, ana, ben = await _two_patients_read(api)
    me = api.client(await api.token(org, "patient/AuditEvent.s patient/Strength.rs", patient=uuid.UUID(ana["id"])))
    assert (await me.get(f"/v1/strengths?client_id={ben['id']}")).status_code == 200  # reads nothing of Ben's
    assert (await me.get(f"/v1/clients/{ben['id']}")).status_code == 403  # no Client scope: refused, names Ben's id
    events = []
    url = "/v1/audit-events?limit=2"
    while url:
        page = (await me.get(url)).json()
        events += page["data"]
        url = f"/v1/audit-events?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else None
    assert events, "Ana's own events are listed"
    assert all(e["client_ids"] == [ana["id"]] for e in events), events
    assert not any(ben["id"] in e["resource_ids"] or ben["id"] in e["client_ids"] for e in events)
    # A filter cannot widen it: Ben's events stay out of reach.
    assert (await me.get(f"/v1/audit-events?client_id={ben['id']}")).json()["data"] == []


async def test_the_row_level_policy_alone_limits_a_patient_transaction_to_its_patient(api):
    org, _staff, ana, ben = await _two_patients_read(api)
    conn = await api.db.connect(APP_ROLE)
    try:
        await conn.execute("SELECT set_config('app.org_id', $1, false), set_config('app.patient_id', $2, false)",
                           str(org.id), ana["id"])
        rows = await conn.fetch("SELECT client_ids FROM audit_events")  # no WHERE: the policy is the filter
        assert rows
        assert all(r["client_ids"] == [uuid.UUID(ana["id"])] for r in rows)
        await conn.execute("SELECT set_config('app.patient_id', '', false)")
        every = await conn.fetch("SELECT client_ids FROM audit_events")
        assert any(uuid.UUID(ben["id"]) in r["client_ids"] for r in every)  # the organization sees them all
    finally:
        await conn.close()


@pytest.mark.parametrize("scopes", ["patient/*.cruds", "system/*.cruds", "system/*.read", "user/*.*"])
async def test_audit_event_is_never_implied_by_a_wildcard(api, scopes):
    org = await api.org()
    client = await create(api.client(await api.token(org, "system/Client.c")), "clients")
    patient = uuid.UUID(client["id"]) if scopes.startswith("patient") else None
    resp = await api.client(await api.token(org, scopes, patient=patient)).get("/v1/audit-events")
    assert resp.status_code == 403
    assert "AuditEvent.s" in resp.headers["www-authenticate"]
    assert not scope_allows(parse_scopes(scopes), "AuditEvent", "s")


def test_a_wildcard_grant_never_grants_audit_access():
    assert grant("system/AuditEvent.s", "system/*.cruds") == ""
    assert grant("system/*.rs", "system/AuditEvent.rs system/Client.r") == "system/Client.r"
    assert grant("system/*.rs", "system/*.cruds") == "system/*.rs"
    assert grant("system/AuditEvent.s", "system/AuditEvent.s system/*.cruds") == "system/AuditEvent.s"
    assert scope_allows(parse_scopes("system/AuditEvent.s"), "AuditEvent", "s")


@pytest.mark.parametrize("org_setting", ["theirs", "unset"])
async def test_the_service_role_cannot_insert_an_audit_row_without_an_organization(api, org_setting):
    org = await api.org()
    conn = await api.db.connect(APP_ROLE)
    try:
        if org_setting == "theirs":
            await conn.execute("SELECT set_config('app.org_id', $1, false)", str(org.id))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO audit_events (org_id, action, outcome) VALUES (NULL, 'read', 'success')")
        # The one way to write an organization-less row writes an anonymous refusal and nothing else.
        await conn.execute("SELECT audit_anonymous($1::jsonb)", '[{"outcome": "success", "status_code": 200}, '
                           '{"outcome": "denied", "status_code": 401, "path": "/v1/clients"}]')
    finally:
        await conn.close()
    rows = await api.db.fetch("SELECT * FROM audit_events WHERE org_id IS NULL")
    assert [(r["action"], r["status_code"], r["app_id"], r["path"]) for r in rows] == [
        ("denied", 401, None, "/v1/clients")]


async def test_audit_append_writes_only_rows_of_the_organization_it_sets_and_only_for_the_service_role(api):
    """``audit_append`` (migration 0016; the group commit's and every write's INSERT) runs as its caller: row-level
    security refuses a row of an organization other than the one it sets, and with it every row of the call; a role
    not granted it cannot call it at all."""
    a, b = await api.org("A"), await api.org("B")

    def row(org):
        return {"org_id": str(org.id), "action": "read", "outcome": "success", "resource_type": "Client",
                "resource_ids": [str(uuid.uuid4())], "client_ids": [], "request_id": "append-test"}

    conn = await api.db.connect(APP_ROLE)
    try:
        assert await conn.fetchval("SELECT audit_append($1, $2::jsonb)", a.id, orjson.dumps([row(a)]).decode()) == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT audit_append($1, $2::jsonb)", a.id, orjson.dumps([row(a), row(b)]).decode())
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the organization set is the call's, not the rows'
            await conn.fetchval("SELECT audit_append($1, $2::jsonb)", b.id, orjson.dumps([row(a)]).decode())
        assert await conn.fetchval("SELECT current_setting('app.org_id', true)") in (None, "")  # set for its call only
    finally:
        await conn.close()
    rows = await api.db.fetch("SELECT org_id FROM audit_events WHERE request_id = 'append-test'")
    assert [r["org_id"] for r in rows] == [a.id]
    grantees = await api.db.fetch(
        "SELECT coalesce(r.rolname, 'PUBLIC') AS who, a.privilege_type FROM pg_proc p, aclexplode(p.proacl) a "
        "LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE p.proname = 'audit_append' AND p.proowner <> a.grantee")
    assert [(g["who"], g["privilege_type"]) for g in grantees] == [(APP_ROLE, "EXECUTE")]  # not PUBLIC's
