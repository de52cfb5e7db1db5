"""The direct path of GET /v1/<collection>/<id> (service.collections.fastread) answers exactly as the FastAPI
route it bypasses: same statuses, bodies and headers, the same audit rows, the same tenant transaction."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from service.db import driver_transaction
from tests.support.audit import events
from tests.support.factories import create
from tests.support.fastread import both, same
from tests.support.oauth import register, secret_token

ALL = "system/*.cruds"


async def test_every_outcome_matches_the_fastapi_route(api, served):
    org, other = await api.org("A"), await api.org("B")
    c = api.client(await api.token(org, ALL))
    strength = await create(c, "strengths")
    client_id = strength["client_id"]
    gone = await create(c, "goals", client_id=client_id, strength_ids=[strength["id"]])
    assert (await c.delete(f"/v1/goals/{gone['id']}")).status_code == 204
    theirs = await create(api.client(await api.token(other, ALL)), "clients")
    no_children = api.client(await api.token(org, "system/Client.rs"))
    narrow = api.client(await api.token(org, "system/Goal.rs"))
    cases = [
        (c, f"/v1/clients/{client_id}", 200),
        (c, f"/v1/clients/{client_id}?include=strengths", 200),
        (c, f"/v1/clients/{client_id}?include=strengths,goals,strengths", 200),
        (c, f"/v1/clients/{client_id}?include=", 200),
        (c, f"/v1/strengths/{strength['id']}", 200),
        (c, f"/v1/clients/{client_id}?include=nope", 422),
        (c, f"/v1/clients/{theirs['id']}?include=strengths", 404),
        (c, f"/v1/clients/{uuid.uuid4()}", 404),
        (c, f"/v1/goals/{gone['id']}", 410),
        (no_children, f"/v1/clients/{client_id}?include=strengths", 403),
        (narrow, f"/v1/clients/{client_id}", 403),
        (api.client(None), f"/v1/clients/{client_id}", 401),
        (api.client("not-a-jwt"), f"/v1/clients/{client_id}", 401),
    ]
    for who, url, status in cases:
        fast, slow = await both(who, url)
        assert fast.status_code == status, (url, fast.text)
        same(fast, slow)
    bad_scheme = await api.http.get(f"/v1/clients/{client_id}", headers={"Authorization": "Basic abc"})
    assert bad_scheme.status_code == 401
    assert len(served) == len(cases) + 1  # every first request of a pair took the direct path
    assert fast.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_other_shapes_go_to_fastapi(api, served):
    org = await api.org("A")
    c = api.client(await api.token(org, ALL))
    client = await create(c, "clients")
    assert (await c.get(f"/v1/clients/{client['id'].upper()}")).status_code == 200  # not canonical
    assert (await c.get(f"/v1/clients/{client['id']}?include=strengths&include=goals")).status_code == 200
    assert (await c.get(f"/v1/clients/{client['id']}?include={'x' * 501}")).status_code == 422
    assert (await c.get("/v1/clients/not-a-uuid")).status_code == 422
    assert (await c.request("HEAD", f"/v1/clients/{client['id']}")).status_code == 405
    assert served == []


async def test_a_read_leaves_one_audit_event_and_a_refusal_one_too(api, served):
    org, other = await api.org("A"), await api.org("B")
    c = api.client(await api.token(org, ALL))
    strength = await create(c, "strengths")
    client_id = uuid.UUID(strength["client_id"])
    theirs = await create(api.client(await api.token(other, ALL)), "clients")
    before = len(await events(api))

    ok = await c.get(f"/v1/clients/{client_id}?include=strengths", headers={"X-Request-Id": "fast-1"})
    assert ok.status_code == 200
    assert ok.headers["etag"] == 'W/"1"'
    assert [s["id"] for s in ok.json()["strengths"]] == [strength["id"]]
    missing = await c.get(f"/v1/clients/{theirs['id']}")
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"No client with id {theirs['id']}"
    assert len(served) == 2

    new = (await events(api))[before:]
    assert [(e["resource_type"], e["action"], e["outcome"], e["status_code"]) for e in new] == [
        ("Client", "read", "success", None), ("Strength", "read", "success", None),
        ("Client", "read", "not_found", 404)]
    assert new[0]["request_id"] == "fast-1"
    assert new[0]["resource_ids"] == [client_id]
    assert new[1]["resource_ids"] == [uuid.UUID(strength["id"])]
    assert new[1]["client_ids"] == [client_id]
    assert new[2]["resource_ids"] == [uuid.UUID(theirs["id"])]
    assert {e["org_id"] for e in new} == {org.id}


async def test_a_revoked_token_is_refused_at_once(api, served):
    org = await api.org("A")
    creds = await register(api, org, ALL)
    token = await secret_token(api, creds)
    c = api.client(token)
    client = await create(c, "clients")
    assert (await c.get(f"/v1/clients/{client['id']}")).status_code == 200
    revoked = await api.http.post("/oauth/revoke", data={"token": token},
                                  auth=(creds["client_id"], creds["client_secret"]))
    assert revoked.status_code == 200
    refused = await c.get(f"/v1/clients/{client['id']}")
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert len(served) == 2


async def test_a_patient_token_reads_only_its_patient(api, served):
    org = await api.org("A")
    c = api.client(await api.token(org, ALL))
    mine, other = await create(c, "clients"), await create(c, "clients")
    patient = api.client(await api.token(org, "patient/Client.rs patient/Strength.rs", uuid.UUID(mine["id"])))
    assert (await patient.get(f"/v1/clients/{mine['id']}?include=strengths")).status_code == 200
    fast, slow = await both(patient, f"/v1/clients/{other['id']}")
    assert fast.status_code == 404
    same(fast, slow)
    assert len(served) == 2


async def test_no_connection_is_left_in_a_transaction(api):
    org = await api.org("A")
    c = api.client(await api.token(org, ALL))
    client = await create(c, "clients")
    for url in (f"/v1/clients/{client['id']}", f"/v1/clients/{uuid.uuid4()}", f"/v1/clients/{client['id']}?include=x"):
        for _ in range(3):
            await c.get(url)
    idle = await api.db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in%'")
    assert idle == 0


async def test_sqlalchemy_statements_cannot_run_outside_a_driver_transaction(api):
    org = await api.org("A")
    engine = api.app.state.ctx.engine
    with pytest.raises(Exception, match="manually started transaction"):
        async with driver_transaction(engine, org.id, None) as conn:
            await conn.execute(text("SELECT 1"))
    async with driver_transaction(engine, org.id, None) as conn:  # the connection went back clean
        from service.db import driver

        raw = await driver(conn)
        assert await raw.fetchval("SELECT current_setting('app.org_id')") == str(org.id)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT current_setting('app.org_id', true)"))).scalar() in ("", None)
