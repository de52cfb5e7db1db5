"""A third-party OAuth client (Authlib's httpx AsyncOAuth2Client) discovers the token endpoint and gets
tokens with each client authentication method; private_key_jwt assertions are checked as SMART asks."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT

from tests.support.gqlkit import statements_on_the_wire
from tests.support.oauth import (
    ASSERTION_TYPE,
    TOKEN_URL,
    assertion,
    assertion_form,
    ec_key,
    jwks_server,
    public_jwks,
    register,
    rsa_key,
    without_alg,
)


def oauth_client(api, **kw) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(transport=httpx.ASGITransport(app=api.app), base_url="http://testserver", **kw)


async def discover(api) -> dict:
    async with oauth_client(api) as client:
        resp = await client.request("GET", "/.well-known/oauth-authorization-server", withhold_token=True)
    assert resp.status_code == 200
    return resp.json()


async def test_discovery_advertises_all_three_methods(api):
    meta = await discover(api)
    assert meta["token_endpoint"] == TOKEN_URL
    assert set(meta["token_endpoint_auth_methods_supported"]) >= {
        "client_secret_basic", "client_secret_post", "private_key_jwt"}
    assert set(meta["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert meta["introspection_endpoint"].endswith("/oauth/introspect")
    assert meta["revocation_endpoint"].endswith("/oauth/revoke")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_authlib_client_gets_a_token_with_a_secret(api, method):
    org = await api.org()
    creds = await register(api, org, "system/Client.cruds system/Goal.rs")
    token_endpoint = (await discover(api))["token_endpoint"]
    async with oauth_client(api, client_id=creds["client_id"], client_secret=creds["client_secret"],
                            token_endpoint_auth_method=method, scope="system/Client.rs") as client:
        token = await client.fetch_token(token_endpoint, grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        assert token["scope"] == "system/Client.rs"  # the intersection of asked and allowed
        assert (await client.get("/v1/clients")).status_code == 200


@pytest.mark.parametrize("make_key", [rsa_key, ec_key], ids=["RS384", "ES384"])
async def test_authlib_client_gets_a_token_with_private_key_jwt(api, make_key):
    org = await api.org()
    key = make_key()
    creds = await register(api, org, "system/Client.rs", jwks=public_jwks(key))
    assert "client_secret" not in creds
    token_endpoint = (await discover(api))["token_endpoint"]
    auth = PrivateKeyJWT(token_endpoint, alg=key.alg, headers={"kid": key.kid, "typ": "JWT"},
                         claims={"exp": int(time.time()) + 240})
    async with oauth_client(api, client_id=creds["client_id"], client_secret=key,
                            token_endpoint_auth_method=auth) as client:
        token = await client.fetch_token(token_endpoint, grant_type="client_credentials")
        assert token["scope"] == "system/Client.rs"
        assert (await client.get("/v1/clients")).status_code == 200


async def test_private_key_jwt_with_a_jwks_url(api):
    org = await api.org()
    old, new = rsa_key(), ec_key()
    with jwks_server(public_jwks(old)) as (url, state):
        creds = await register(api, org, "system/Client.rs", jwks_url=url)
        cid = creds["client_id"]
        resp = await api.http.post("/oauth/token", data=assertion_form(old, cid))
        assert resp.status_code == 200, resp.text
        resp = await api.http.post("/oauth/token", data=assertion_form(old, cid))
        assert resp.status_code == 200
        assert state["hits"] == 1  # cached
        state["doc"] = public_jwks(old, new)  # the app rotates its key: an unknown kid makes us refetch
        api.app.state.jwks_cache._cache[url] = (time.monotonic() - 60, api.app.state.jwks_cache._cache[url][1])
        resp = await api.http.post("/oauth/token", data=assertion_form(new, cid))
        assert resp.status_code == 200, resp.text
        assert state["hits"] == 2


async def token_status(api, form) -> tuple[int, dict]:
    resp = await api.http.post("/oauth/token", data=form)
    return resp.status_code, resp.json()


async def test_assertion_refusals_are_401_invalid_client(api):
    org = await api.org()
    key, stranger = rsa_key(), rsa_key()
    creds = await register(api, org, "system/Client.rs", jwks=public_jwks(key))
    cid = creds["client_id"]
    cases = {
        "exp too far ahead": assertion_form(key, cid, lifetime=600),
        "expired": assertion_form(key, cid, lifetime=-120),
        "wrong aud": assertion_form(key, cid, aud="http://testserver/other"),
        "issuer as aud": assertion_form(key, cid, aud="http://testserver"),
        "bad signature": assertion_form(stranger, cid, kid=key.kid),
        "unknown kid": assertion_form(stranger, cid),
        "RS256 not allowed": assertion_form(without_alg(key), cid, alg="RS256"),
        "sub differs": assertion_form(key, cid, sub="app_someone_else"),
        "no jti": {**assertion_form(key, cid),
                   "client_assertion": assertion(key, cid, jti="")},
        "wrong assertion type": {**assertion_form(key, cid), "client_assertion_type": "urn:x"},
        "client_id differs": {**assertion_form(key, cid), "client_id": "app_other"},
        "unregistered jku": assertion_form(key, cid, headers={"jku": "https://evil.example/jwks"}),
        "not yet valid": assertion_form(key, cid, nbf=int(time.time()) + 200),
    }
    for why, form in cases.items():
        status, body = await token_status(api, form)
        assert (status, body.get("error")) == (401, "invalid_client"), why
    status, _ = await token_status(api, assertion_form(key, cid))
    assert status == 200  # and the same app with a good assertion still gets in


async def test_assertion_jti_is_never_reusable(api):
    org = await api.org()
    key = ec_key()
    creds = await register(api, org, "system/Client.rs", jwks=public_jwks(key))
    form = assertion_form(key, creds["client_id"], jti="once-only")
    assert (await token_status(api, form))[0] == 200
    status, body = await token_status(api, form)
    assert (status, body["error"]) == (401, "invalid_client")
    # a fresh assertion with the same jti is refused too, and by another instance of the service
    from tests.support.harness import Api

    async with Api.start(api.db) as other:
        status, _ = await token_status(other, assertion_form(key, creds["client_id"], jti="once-only"))
        assert status == 401
    count = await api.db.fetchval("SELECT count(*) FROM used_assertions WHERE client_id = $1", creds["client_id"])
    assert count == 1


async def test_secret_apps_cannot_use_assertions_and_jwks_apps_have_no_secret(api):
    org = await api.org()
    key = rsa_key()
    secret_app = await register(api, org, "system/Client.rs")
    status, body = await token_status(api, assertion_form(key, secret_app["client_id"]))
    assert (status, body["error"]) == (401, "invalid_client")
    jwks_app = await register(api, org, "system/Client.rs", jwks=public_jwks(key))
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials",
                                                     "client_id": jwks_app["client_id"], "client_secret": ""})
    assert resp.status_code == 401


async def test_assertion_and_secret_together_is_refused(api):
    org = await api.org()
    key = rsa_key()
    creds = await register(api, org, "system/Client.rs", jwks=public_jwks(key))
    form = {**assertion_form(key, creds["client_id"]), "client_secret": "x"}
    resp = await api.http.post("/oauth/token", data=form)
    assert resp.status_code in (400, 401)
    assert form["client_assertion_type"] == ASSERTION_TYPE


async def test_authlib_client_introspects_and_revokes(api):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    meta = await discover(api)
    async with oauth_client(api, client_id=creds["client_id"], client_secret=creds["client_secret"],
                            token_endpoint_auth_method="client_secret_basic",
                            revocation_endpoint_auth_method="client_secret_basic") as client:
        token = await client.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        resp = await client.introspect_token(meta["introspection_endpoint"], token=token["access_token"])
        assert resp.json()["active"] is True
        resp = await client.revoke_token(meta["revocation_endpoint"], token=token["access_token"])
        assert resp.status_code == 200
        resp = await client.introspect_token(meta["introspection_endpoint"], token=token["access_token"])
        assert resp.json() == {"active": False}
        assert (await client.get("/v1/clients")).status_code == 401


async def test_the_same_assertion_sent_concurrently_gets_one_token(api):
    """The primary key of used_assertions is the replay check, so a race cannot mint two tokens."""
    org = await api.org()
    key = rsa_key()
    creds = await register(api, org, "system/Client.rs", jwks=public_jwks(key))
    form = assertion_form(key, creds["client_id"])
    results = await asyncio.gather(*(api.http.post("/oauth/token", data=form) for _ in range(6)))
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401, 401, 401]


async def test_a_token_for_a_secret_is_one_statement(api):
    """``client_secret_basic``: the app is found by one statement (``auth_app``) in one round trip, with no
    transaction around it; a wrong secret is refused after the same one statement, an unknown client likewise."""
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    for basic, error in [((creds["client_id"], creds["client_secret"]), None), ((creds["client_id"], "wrong"),
                         "invalid_client"), (("unknown-client", "x"), "invalid_client")]:
        with statements_on_the_wire(api.app.state.ctx.engine) as sent:
            resp = await api.http.post(TOKEN_URL, data={"grant_type": "client_credentials"}, auth=basic)
            await asyncio.sleep(0)  # asyncpg calls its query loggers soon after a statement, not at once
        assert (resp.status_code, resp.json().get("error")) == (401 if error else 200, error), resp.text
        assert sent == ["SELECT * FROM auth_app($1)"], sent
