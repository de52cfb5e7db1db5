"""RFC 7662 introspection and RFC 7009 revocation; a revoked token is refused at once by every instance."""

from __future__ import annotations

import time

from tests.support.harness import Api
from tests.support.oauth import assertion_form, ec_key, public_jwks, register, secret_token


async def test_introspection_of_an_active_token(api):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs system/Goal.r")
    token = await secret_token(api, creds, "system/Client.rs")
    resp = await api.http.post("/oauth/introspect", data={"token": token},
                               auth=(creds["client_id"], creds["client_secret"]))
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["active"] is True
    assert body["scope"] == "system/Client.rs"
    assert body["client_id"] == creds["client_id"]
    assert body["org_id"] == str(org.id)
    assert time.time() < body["exp"] <= time.time() + 901
    assert "patient" not in body


async def test_introspection_with_private_key_jwt_and_of_bad_tokens(api):
    org = await api.org()
    key = ec_key()
    creds = await register(api, org, "system/Client.rs", jwks=public_jwks(key))
    for token in ("garbage", "a.b.c"):
        form = {"token": token, **assertion_form(key, creds["client_id"])}
        form.pop("grant_type")
        resp = await api.http.post("/oauth/introspect", data=form)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"active": False}


async def test_introspection_needs_client_authentication(api):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    token = await secret_token(api, creds)
    resp = await api.http.post("/oauth/introspect", data={"token": token})
    assert resp.status_code == 401
    resp = await api.http.post("/oauth/introspect", data={"token": token}, auth=(creds["client_id"], "wrong"))
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"


async def test_another_organizations_token_is_inactive_to_me(api):
    mine, theirs = await api.org("mine"), await api.org("theirs")
    me = await register(api, mine, "system/Client.rs")
    them = await register(api, theirs, "system/Client.rs")
    token = await secret_token(api, them)
    resp = await api.http.post("/oauth/introspect", data={"token": token}, auth=(me["client_id"], me["client_secret"]))
    assert resp.json() == {"active": False}


async def test_revoked_token_is_refused_at_once_by_every_instance(api):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    token = await secret_token(api, creds)
    async with Api.start(api.db) as other:  # a second instance of the service, on the same database
        assert (await api.client(token).get("/v1/clients")).status_code == 200
        assert (await other.client(token).get("/v1/clients")).status_code == 200  # now cached there
        resp = await api.http.post("/oauth/revoke", data={"token": token, "token_type_hint": "access_token"},
                                   auth=(creds["client_id"], creds["client_secret"]))
        assert resp.status_code == 200
        for instance in (api, other):
            resp = await instance.client(token).get("/v1/clients")
            assert resp.status_code == 401
            assert resp.headers["www-authenticate"].startswith("Bearer")
        resp = await other.http.post("/oauth/introspect", data={"token": token},
                                     auth=(creds["client_id"], creds["client_secret"]))
        assert resp.json() == {"active": False}
    # a token issued afterwards to the same app still works
    assert (await api.client(await secret_token(api, creds)).get("/v1/clients")).status_code == 200


async def test_revocation_answers_200_for_unknown_and_foreign_tokens(api):
    mine, theirs = await api.org("mine"), await api.org("theirs")
    me = await register(api, mine, "system/Client.rs")
    them = await register(api, theirs, "system/Client.rs")
    their_token = await secret_token(api, them)
    for token in ("unknown", their_token):
        resp = await api.http.post("/oauth/revoke", data={"token": token}, auth=(me["client_id"], me["client_secret"]))
        assert resp.status_code == 200
    # I cannot revoke another app's token
    assert (await api.client(their_token).get("/v1/clients")).status_code == 200
    resp = await api.http.post("/oauth/revoke", data={"token": "x"})
    assert resp.status_code == 401
    resp = await api.http.post("/oauth/revoke", data={}, auth=(me["client_id"], me["client_secret"]))
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"


async def test_revocation_holds_for_adapters_that_verify_tokens_themselves(api):
    """GraphQL or FHIR adapters call TokenService.verify directly: it checks revocation by default,
    even when the verification itself is still cached."""
    import pytest

    from service.errors import Unauthenticated

    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    token = await secret_token(api, creds)
    tokens = api.app.state.ctx.tokens
    assert (await tokens.verify(token)).org_id == org.id
    await api.http.post("/oauth/revoke", data={"token": token}, auth=(creds["client_id"], creds["client_secret"]))
    with pytest.raises(Unauthenticated):
        await tokens.verify(token)
    assert await api.db.fetchval("SELECT count(*) FROM revoked_tokens") == 1


async def test_tokens_of_a_disabled_app_are_refused_at_once(api):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    token = await secret_token(api, creds)
    assert (await api.client(token).get("/v1/clients")).status_code == 200
    conn = await api.db.connect()
    try:
        await conn.execute("UPDATE apps SET disabled_at = now() WHERE client_id = $1", creds["client_id"])
    finally:
        await conn.close()
    resp = await api.client(token).get("/v1/clients")
    assert resp.status_code == 401
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(creds["client_id"], creds["client_secret"]))
    assert (resp.status_code, resp.json()["error"]) == (401, "invalid_client")


async def test_revocation_purges_rows_of_long_expired_tokens(api):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    conn = await api.db.connect()
    try:
        await conn.execute("INSERT INTO revoked_tokens (jti, org_id, client_id, expires_at) "
                           "VALUES ('old', $1, $2, now() - interval '2 hours')", org.id, creds["client_id"])
    finally:
        await conn.close()
    token = await secret_token(api, creds)
    await api.http.post("/oauth/revoke", data={"token": token}, auth=(creds["client_id"], creds["client_secret"]))
    assert [r["jti"] for r in await api.db.fetch("SELECT jti FROM revoked_tokens")] != ["old"]
    assert await api.db.fetchval("SELECT count(*) FROM revoked_tokens WHERE jti = 'old'") == 0


async def test_basic_credentials_with_another_client_id_in_the_form_are_refused(api):
    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "app_x"},
                               auth=(creds["client_id"], creds["client_secret"]))
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
