"""Row-level security at the database level: the service role sees nothing without the organization
setting, only that organization's rows with it, cannot delete, and is neither superuser, owner nor
exempt from row-level security."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.support.harness import APP_ROLE

TENANT_TABLES = [
    "clients", "strengths", "protective_factors", "exceptions", "goals", "milestones", "outcome_markers",
    "measurements", "strength_uses", "experiments", "safety_alerts", "history", "changes", "external_ids",
    "organizations", "apps", "used_assertions", "revoked_tokens", "idempotency_keys", "audit_events",
    "webhook_subscriptions", "webhook_outbox", "webhook_deliveries",
    "bulk_export_jobs", "bulk_export_files", "bulk_export_chunks",
    "app_links", "app_grants", "authorization_codes", "refresh_tokens",
]


async def seed(api):
    orgs = [await api.org("one"), await api.org("two")]
    for org in orgs:
        c = api.client(await api.token(org, "system/Client.cruds"))
        for name in ("Ana", "Ben"):
            assert (await c.post("/v1/clients", json={"display_name": name})).status_code == 201
    return orgs


async def test_service_role_without_org_setting_sees_no_rows(api):
    await seed(api)
    assert await api.db.fetchval("SELECT count(*) FROM clients") == 4  # the owner sees them all
    conn = await api.db.connect(APP_ROLE)
    try:
        assert await conn.fetchval("SELECT current_user") == APP_ROLE
        assert await conn.fetchval("SELECT count(*) FROM clients") == 0  # a query that forgot the setting
        assert await conn.fetchval("SELECT count(*) FROM history") == 0
        assert await conn.fetchval("SELECT count(*) FROM apps") == 0
        async with conn.transaction():  # an empty setting is the same as none
            await conn.execute("SELECT set_config('app.org_id', '', true)")
            assert await conn.fetchval("SELECT count(*) FROM clients") == 0
    finally:
        await conn.close()


async def test_service_role_with_an_org_sees_only_that_org(api):
    one, two = await seed(api)
    conn = await api.db.connect(APP_ROLE)
    try:
        for org in (one, two):
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.org_id', $1, true)", str(org.id))
                rows = await conn.fetch("SELECT org_id FROM clients")
                assert len(rows) == 2
                assert {r["org_id"] for r in rows} == {org.id}
                # and cannot write into another organization
                other = two if org is one else one
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(
                        "INSERT INTO clients (org_id, id, display_name) VALUES ($1, $2, 'Mallory')",
                        other.id, uuid.uuid4())
        async with conn.transaction():  # an unknown org sees nothing
            await conn.execute("SELECT set_config('app.org_id', $1, true)", str(uuid.uuid4()))
            assert await conn.fetchval("SELECT count(*) FROM clients") == 0
        # the setting is per transaction: after it ends, nothing again
        assert await conn.fetchval("SELECT count(*) FROM clients") == 0
    finally:
        await conn.close()


async def test_patient_setting_restricts_to_one_client(api):
    one, _ = await seed(api)
    conn = await api.db.connect(APP_ROLE)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.org_id', $1, true)", str(one.id))
            ana = await conn.fetchval("SELECT id FROM clients WHERE display_name = 'Ana'")
            await conn.execute("SELECT set_config('app.patient_id', $1, true)", str(ana))
            assert [r["id"] for r in await conn.fetch("SELECT id FROM clients")] == [ana]
    finally:
        await conn.close()


async def test_service_role_cannot_delete_and_has_no_privileges_to_bypass(api):
    one, _ = await seed(api)
    conn = await api.db.connect(APP_ROLE)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.org_id', $1, true)", str(one.id))
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM clients")
        role = await conn.fetchrow("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles "
                                   "WHERE rolname = current_user")
        assert not any(role.values())
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = $1 AND c.relnamespace = 'public'::regnamespace", APP_ROLE)
        assert owned == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("ALTER TABLE clients DISABLE ROW LEVEL SECURITY")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET ROLE strengths_owner")
    finally:
        await conn.close()


async def test_every_tenant_table_has_row_level_security(api):
    rows = await api.db.fetch("SELECT relname, relrowsecurity FROM pg_class WHERE relname = ANY($1::text[])",
                              TENANT_TABLES)
    assert {r["relname"]: r["relrowsecurity"] for r in rows} == dict.fromkeys(TENANT_TABLES, True)
    with_org = await api.db.fetch(
        "SELECT c.relname, CAST(c.relkind AS text) AS relkind, c.reloptions FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')")
    assert {r["relname"] for r in with_org if r["relkind"] != "v"} <= set(TENANT_TABLES)
    # A view of tenant rows runs as its caller, under its tables' policies (a view runs as its owner otherwise).
    views = {r["relname"]: r["reloptions"] for r in with_org if r["relkind"] == "v"}
    assert views == {"record_versions": ["security_invoker=true"]}


async def test_the_service_itself_connects_as_the_service_role(api):
    from sqlalchemy import text

    async with api.app.state.ctx.engine.connect() as conn:
        assert (await conn.execute(text("SELECT current_user"))).scalar() == APP_ROLE


async def test_row_level_security_keeps_the_index_plan_for_a_page(api):
    """The patient policy must not make the planner trade the primary-key index for a scan and sort of the
    whole organization (what the 0002 form of the policy did: ~10x slower pages)."""
    one, two = await seed(api)
    conn = await api.db.connect()
    try:
        for org in (one, two):
            await conn.execute(
                "INSERT INTO clients SELECT (r).* FROM (SELECT jsonb_populate_record(NULL::clients, to_jsonb(c) "
                "|| jsonb_build_object('id', gen_random_uuid())) AS r FROM clients c, generate_series(1, 2000) "
                "WHERE c.org_id = $1 AND c.display_name = 'Ana') s", org.id)
        await conn.execute("ANALYZE clients")
    finally:
        await conn.close()
    app = await api.db.connect(APP_ROLE)
    try:
        async with app.transaction():
            await app.execute("SELECT set_config('app.org_id', $1, true)", str(one.id))
            plan = "\n".join(r[0] for r in await app.fetch(
                f"EXPLAIN SELECT * FROM clients WHERE org_id = '{one.id}' AND deleted_at IS NULL ORDER BY id LIMIT 50"))
    finally:
        await app.close()
    assert "Index Scan" in plan, plan
    assert "Sort" not in plan, plan
