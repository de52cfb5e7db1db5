"""`strengths-api keys rotate`: the old key keeps verifying its tokens, jwks_uri lists both keys, new
tokens are signed with the new key (by this instance and by instances that were already running)."""

from __future__ import annotations

import asyncio
import json

from joserfc import jws

from service import cli
from tests.support.harness import Api
from tests.support.oauth import register


def kid_of(token: str) -> str:
    return jws.extract_compact(token.encode()).headers()["kid"]


async def get_token(api, creds) -> str:
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(creds["client_id"], creds["client_secret"]))
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


async def test_keys_rotate(api, monkeypatch, capsys):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    old_token = await get_token(api, creds)
    old_kid = kid_of(old_token)

    monkeypatch.setenv("DATABASE_URL", api.db.app_url)
    monkeypatch.setenv("MIGRATION_DATABASE_URL", api.db.owner_url)
    capsys.readouterr()
    await asyncio.to_thread(cli.main, ["keys", "rotate"])
    new_kid = json.loads(capsys.readouterr().out)["kid"]
    assert new_kid != old_kid

    async with Api.start(api.db) as fresh:  # an instance started after the rotation
        kids = [k["kid"] for k in (await fresh.http.get("/.well-known/jwks.json")).json()["keys"]]
        assert set(kids) == {old_kid, new_kid}
        assert all("d" not in k for k in (await fresh.http.get("/.well-known/jwks.json")).json()["keys"])
        new_token = await get_token(fresh, creds)
        assert kid_of(new_token) == new_kid
        assert (await fresh.client(old_token).get("/v1/clients")).status_code == 200  # old key still verifies

        # The instance that was running during the rotation meets the new kid and reloads its keys
        # (at most every few seconds, so an unknown kid cannot make it hammer the database).
        api.app.state.ctx.keys._loaded_at -= 10
        assert (await api.client(new_token).get("/v1/clients")).status_code == 200
        assert (await api.client(old_token).get("/v1/clients")).status_code == 200
        assert kid_of(await get_token(api, creds)) == new_kid  # and now signs with the new key
        kids = [k["kid"] for k in (await api.http.get("/.well-known/jwks.json")).json()["keys"]]
        assert set(kids) == {old_kid, new_kid}


async def test_running_instance_signs_with_the_new_key_within_a_minute(api):
    from service.auth.tokens import insert_key

    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    conn = await api.db.connect()
    try:
        await conn.execute("UPDATE signing_keys SET active = false, retired_at = now() WHERE active")
    finally:
        await conn.close()
    from service.db import make_engine

    engine = make_engine(api.db.owner_url, api.db.settings(), pool=False)
    async with engine.begin() as sa_conn:
        new_kid = await insert_key(sa_conn, api.app.state.ctx.at_rest.signing_keys)
    await engine.dispose()
    assert kid_of(await get_token(api, creds)) != new_kid  # not yet: keys are reloaded at most once a minute
    api.app.state.ctx.keys._loaded_at -= 61
    assert kid_of(await get_token(api, creds)) == new_kid
