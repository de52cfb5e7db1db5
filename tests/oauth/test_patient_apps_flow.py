"""End to end with Authlib's OAuth 2.0 client (AsyncOAuth2Client over an httpx ASGI transport), as a mood-tracking
app would run it: a public app, a clinician's app link, authorize with PKCE, token, read its own data, refresh,
refresh reuse revoking the family, link revocation killing the tokens, and a wrong verifier refused."""

from __future__ import annotations

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError as AuthlibOAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from tests.support.factories import create
from tests.support.harness import Api
from tests.support.patient_apps import (
    APP_SCOPES,
    REDIRECT,
    STAFF_SCOPES,
    backdate_rotation,
    new_link,
    public_app,
    redirected,
    refresh,
)

FHIR_BASE = "http://testserver/fhir/R4"


def app_client(api: Api, app: dict, **kw) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(client_id=app["client_id"], token_endpoint_auth_method="none", redirect_uri=REDIRECT,
                             code_challenge_method="S256", transport=httpx.ASGITransport(app=api.app),
                             base_url="http://testserver", **kw)


async def authorized(api: Api, client: AsyncOAuth2Client, meta: dict, link_code: str, verifier: str) -> str:
    """The authorization response URL the app's redirect URI receives (Authlib builds the request)."""
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                                 link_code=link_code, aud=FHIR_BASE, scope=APP_SCOPES)
    resp = await client.request("GET", url, withhold_token=True)
    assert redirected(resp)["state"] == state
    return resp.headers["location"]


async def setup(api: Api):
    org = await api.org()
    staff = api.client(await api.token(org, STAFF_SCOPES))
    ana, ben = await create(staff, "clients"), await create(staff, "clients")
    marker = await create(staff, "outcome-markers", client_id=ana["id"])
    await create(staff, "measurements", client_id=ana["id"], marker_id=marker["id"])
    await create(staff, "measurements", client_id=ben["id"])
    app = await public_app(api, org)
    link = await new_link(staff, ana["id"], app["client_id"])
    async with app_client(api, app) as probe:
        meta = (await probe.request("GET", "/.well-known/oauth-authorization-server", withhold_token=True)).json()
    return staff, ana, ben, app, link, meta


async def test_authlib_client_runs_the_whole_patient_app_flow(api):
    staff, ana, ben, app, link, meta = await setup(api)
    verifier = generate_token(64)
    async with app_client(api, app, scope=APP_SCOPES) as client:
        location = await authorized(api, client, meta, link["link_code"], verifier)
        token = await client.fetch_token(meta["token_endpoint"], authorization_response=location,
                                         code_verifier=verifier)
        assert token["patient"] == ana["id"]
        assert token["token_type"] == "Bearer"
        assert token["refresh_token"]
        assert set(token["scope"].split()) == set(APP_SCOPES.split())

        # Its own data, and nothing of another client's.
        assert (await client.get(f"/v1/clients/{ana['id']}")).status_code == 200
        mine = (await client.get("/v1/measurements")).json()["data"]
        assert mine
        assert {m["client_id"] for m in mine} == {ana["id"]}
        assert (await client.get(f"/v1/clients/{ben['id']}")).status_code == 404
        assert (await client.post("/v1/clients", json={"display_name": "x"})).status_code == 403  # patient token

        # Refresh: a new pair, the old refresh token rotated away.
        first_refresh = token["refresh_token"]
        refreshed = await client.refresh_token(meta["token_endpoint"])
        assert refreshed["refresh_token"] != first_refresh
        assert refreshed["access_token"] != token["access_token"]
        assert (await client.get(f"/v1/clients/{ana['id']}")).status_code == 200

        # Reusing the rotated refresh token (past the retry grace) revokes the whole family, at once.
        await backdate_rotation(api)
        reused = await refresh(api.http, app, first_refresh)
        assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
        assert (await client.get(f"/v1/clients/{ana['id']}")).status_code == 401  # the current access token too
        with pytest.raises(AuthlibOAuthError) as refused:
            await client.refresh_token(meta["token_endpoint"])  # and the current refresh token
        assert refused.value.error == "invalid_grant"


async def test_link_revocation_kills_the_apps_tokens(api):
    staff, ana, _ben, app, link, meta = await setup(api)
    verifier = generate_token(64)
    async with app_client(api, app) as client:
        location = await authorized(api, client, meta, link["link_code"], verifier)
        token = await client.fetch_token(meta["token_endpoint"], authorization_response=location,
                                         code_verifier=verifier)
        assert (await client.get(f"/v1/clients/{ana['id']}")).status_code == 200

        revoked = await staff.delete(f"/v1/clients/{ana['id']}/app-links/{link['id']}")
        assert revoked.status_code == 204
        assert (await client.get(f"/v1/clients/{ana['id']}")).status_code == 401
        refused = await refresh(api.http, app, token["refresh_token"])
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
        listed = (await staff.get(f"/v1/clients/{ana['id']}/app-links")).json()["data"]
        assert listed[0]["id"] == link["id"]
        assert listed[0]["revoked_at"]
        assert listed[0]["redeemed_at"]


async def test_a_wrong_verifier_is_invalid_grant(api):
    _staff, _ana, _ben, app, link, meta = await setup(api)
    async with app_client(api, app) as client:
        location = await authorized(api, client, meta, link["link_code"], generate_token(64))
        with pytest.raises(AuthlibOAuthError) as refused:
            await client.fetch_token(meta["token_endpoint"], authorization_response=location,
                                     code_verifier=generate_token(64))
        assert refused.value.error == "invalid_grant"
