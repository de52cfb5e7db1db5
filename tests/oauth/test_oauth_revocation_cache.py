"""Revocation without a query per request: each instance remembers the tokens it found not revoked and forgets them
when the database announces a revocation (LISTEN/NOTIFY, migration 0014); a lost listener means asking again."""

from __future__ import annotations

import asyncio

from tests.support.harness import Api
from tests.support.oauth import register


async def _token(api: Api, creds: dict) -> str:
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(creds["client_id"], creds["client_secret"]))
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def _revocations(api: Api):
    return api.app.state.ctx.tokens.revocations


async def test_a_known_token_is_not_asked_about_again(api):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    token = await _token(api, creds)
    assert await _revocations(api).subscribed()
    assert (await api.client(token).get("/v1/clients")).status_code == 200
    who = await api.app.state.ctx.tokens.verify(token)
    assert _revocations(api).known_good(who.revocation)


async def test_every_kind_of_revocation_reaches_every_instance_at_once(api):
    org = await api.org()
    async with Api.start(api.db) as other:  # a second instance of the service, on the same database
        assert await _revocations(api).subscribed()
        assert await _revocations(other).subscribed()
        tokens = {}
        for kind in ("revoke", "disable"):
            creds = await register(api, org, "system/Client.rs")
            tokens[kind] = (creds, await _token(api, creds))
            for instance in (api, other):  # both now know the token as good
                assert (await instance.client(tokens[kind][1]).get("/v1/clients")).status_code == 200

        creds, token = tokens["revoke"]
        since = _revocations(other).generation
        resp = await api.http.post("/oauth/revoke", data={"token": token},
                                   auth=(creds["client_id"], creds["client_secret"]))
        assert resp.status_code == 200
        # The revoking instance answered once its own listener heard the revocation; the other hears it from its
        # own session at the same commit (how soon is PostgreSQL's delivery: well under a millisecond when the
        # machine is not starved). Its next request after that refuses the token, with no query of its own.
        await _revocations(other).heard(since)
        assert _revocations(other).generation != since
        for instance in (other, api):  # the other instance first: no chance to have asked since
            assert (await instance.client(token).get("/v1/clients")).status_code == 401
            assert (await instance.client(token).get(f"/v1/clients/{org.id}")).status_code == 401  # fast read

        creds, token = tokens["disable"]
        since = _revocations(other).generation
        # An operator disables the app with SQL: the database notifies, whoever changes the row.
        await api.db.fetch("UPDATE apps SET disabled_at = now() WHERE client_id = $1", creds["client_id"])
        await _revocations(other).heard(since)
        assert _revocations(other).generation != since  # heard, not timed out
        for instance in (other, api):
            assert (await instance.client(token).get("/v1/clients")).status_code == 401
            query = {"query": "{ clients(first: 1) { edges { node { id } } } }"}
            resp = await instance.client(token).post("/graphql", json=query)
            assert resp.status_code == 401 or resp.json().get("errors"), resp.text


async def test_a_lost_listener_means_asking_until_subscribed_again(api, server):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    token = await _token(api, creds)
    revocations = _revocations(api)
    assert await revocations.subscribed()
    assert (await api.client(token).get("/v1/clients")).status_code == 200
    admin = await server._admin()
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'strengths-api-revocations' AND datname = $1", api.db.name)
    finally:
        await admin.close()
    assert killed >= 1
    for _ in range(200):  # the termination is noticed by the listener's connection
        if not revocations.live:
            break
        await asyncio.sleep(0.01)
    assert not revocations.live
    who = await api.app.state.ctx.tokens.verify(token)
    assert not revocations.known_good(who.revocation)  # nothing is known while not subscribed
    # A revocation nobody could hear (the listener is down): the next request asks, and refuses.
    await api.db.fetch("INSERT INTO revoked_tokens (jti, org_id, client_id, expires_at) "
                       "VALUES ($1, $2, $3, now() + interval '1 hour')", who.token_id, org.id, creds["client_id"])
    if not revocations.live:
        assert (await api.client(token).get("/v1/clients")).status_code == 401
    assert await revocations.subscribed(10)  # and it subscribes again
    assert (await api.client(token).get("/v1/clients")).status_code == 401
