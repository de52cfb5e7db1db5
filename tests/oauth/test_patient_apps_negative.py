"""The Inferno-style negatives of the authorization code and refresh grants (security.md section 3: PKCE verifier
missing, blank, wrong or "plain"; a bad code; code reuse; a wrong redirect_uri; refreshed scopes a subset; a
revoked refresh token), and the refresh rotation's edges (grace, reuse, family lifetime, concurrency)."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.patient_apps import (
    REDIRECT,
    authorize,
    backdate_rotation,
    exchange,
    linked,
    new_link,
    pkce,
    redirected,
    refresh,
)


async def fresh_code(api, setup) -> tuple[str, str, str]:
    """(code, verifier, challenge) from a new link of the same client and app."""
    link = await new_link(setup.staff, setup.client["id"], setup.app["client_id"])
    verifier, challenge = pkce()
    code = redirected(await authorize(api.http, setup.app, link["link_code"], challenge))["code"]
    return code, verifier, challenge


def refused(resp, error: str = "invalid_grant", status: int = 400) -> None:
    assert (resp.status_code, resp.json()["error"]) == (status, error), resp.text
    assert resp.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("case", ["missing", "blank", "wrong", "plain", "short"])
async def test_pkce_verifier_must_match_by_s256(api, case):
    setup = await linked(api)
    code, verifier, challenge = await fresh_code(api, setup)
    sent = {"missing": None, "blank": "", "wrong": pkce()[0], "plain": challenge, "short": verifier[:42]}[case]
    refused(await exchange(api.http, setup.app, code, sent))
    refused(await exchange(api.http, setup.app, code, verifier))  # the failed attempt used the code up


async def test_bad_code_code_reuse_and_wrong_redirect_uri(api):
    setup = await linked(api)
    refused(await exchange(api.http, setup.app, "not-a-code", pkce()[0]))

    code, verifier, _ = await fresh_code(api, setup)
    first = await exchange(api.http, setup.app, code, verifier)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    assert first.headers["pragma"] == "no-cache"
    token = first.json()["access_token"]
    assert (await api.client(token).get(f"/v1/clients/{setup.client['id']}")).status_code == 200
    refused(await exchange(api.http, setup.app, code, verifier))  # reuse: and what the code gave is revoked
    assert (await api.client(token).get(f"/v1/clients/{setup.client['id']}")).status_code == 401
    refused(await refresh(api.http, setup.app, first.json()["refresh_token"]))

    code, verifier, _ = await fresh_code(api, setup)
    refused(await exchange(api.http, setup.app, code, verifier, redirect_uri=REDIRECT + "/other"))


async def test_a_code_is_bound_to_its_app_and_expires(api):
    setup = await linked(api)
    from tests.support.patient_apps import public_app

    other_app = await public_app(api, setup.org)
    code, verifier, _ = await fresh_code(api, setup)
    refused(await exchange(api.http, other_app, code, verifier))
    code, verifier, _ = await fresh_code(api, setup)
    conn = await api.db.connect()
    try:
        await conn.execute("UPDATE authorization_codes SET expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    refused(await exchange(api.http, setup.app, code, verifier))


async def test_token_endpoint_checks_the_public_app(api):
    setup = await linked(api)
    code, verifier, _ = await fresh_code(api, setup)
    no_client = await api.http.post("/oauth/token", data={"grant_type": "authorization_code", "code": code,
                                                          "redirect_uri": REDIRECT, "code_verifier": verifier})
    refused(no_client, "invalid_request")
    with_secret = await exchange(api.http, setup.app, code, verifier, client_secret="guess")
    refused(with_secret, "invalid_client", 401)
    # A public app has no secret: client credentials are refused.
    cc = await api.http.post("/oauth/token", data={"grant_type": "client_credentials",
                                                   "client_id": setup.app["client_id"]})
    refused(cc, "invalid_client", 401)
    refused(await api.http.post("/oauth/token", data={"grant_type": "password"}), "unsupported_grant_type")


async def test_refreshed_scopes_are_a_subset_of_the_original(api):
    setup = await linked(api)
    rt = setup.tokens["refresh_token"]
    wider = await refresh(api.http, setup.app, rt, scope="patient/Client.rs patient/Goal.rs")
    refused(wider, "invalid_scope")
    narrow = await refresh(api.http, setup.app, rt, scope="patient/Client.r")
    assert narrow.status_code == 200, narrow.text
    body = narrow.json()
    assert body["scope"] == "patient/Client.r"
    c = api.client(body["access_token"])
    assert (await c.get(f"/v1/clients/{setup.client['id']}")).status_code == 200
    assert (await c.get("/v1/measurements")).status_code == 403  # narrowed away
    # The family keeps its original scope: the next refresh, without scope, gets it all back.
    again = await refresh(api.http, setup.app, body["refresh_token"])
    assert set(again.json()["scope"].split()) == set(setup.tokens["scope"].split())


async def test_revoked_refresh_token(api):
    setup = await linked(api)
    revoked = await api.http.post("/oauth/revoke", data={"token": setup.tokens["refresh_token"],
                                                         "client_id": setup.app["client_id"]})
    assert revoked.status_code == 200
    refused(await refresh(api.http, setup.app, setup.tokens["refresh_token"]))
    token = setup.tokens["access_token"]
    assert (await api.client(token).get(f"/fhir/R4/Patient/{setup.client['id']}")).status_code == 401
    refused(await refresh(api.http, setup.app, "never-issued"))


async def test_retry_within_the_grace_gets_the_same_pair_and_reuse_after_it_revokes(api):
    setup = await linked(api)
    rt = setup.tokens["refresh_token"]
    one, two = await asyncio.gather(refresh(api.http, setup.app, rt), refresh(api.http, setup.app, rt))
    assert one.status_code == two.status_code == 200, (one.text, two.text)
    assert one.json()["refresh_token"] == two.json()["refresh_token"]
    assert one.json()["access_token"] == two.json()["access_token"]
    again = await refresh(api.http, setup.app, rt)  # a plain retry, still within 5 s
    assert again.json()["refresh_token"] == one.json()["refresh_token"]

    await backdate_rotation(api, 6)
    refused(await refresh(api.http, setup.app, rt))  # reuse: the family is revoked, committed despite the error
    conn = await api.db.connect()
    try:
        reason = await conn.fetchval("SELECT revoked_reason FROM app_grants")
    finally:
        await conn.close()
    assert reason == "refresh_token_reused"
    refused(await refresh(api.http, setup.app, one.json()["refresh_token"]))
    assert (await api.client(one.json()["access_token"]).get("/v1/measurements")).status_code == 401


async def test_a_family_lives_ninety_days_at_most(api):
    setup = await linked(api)
    conn = await api.db.connect()
    try:
        days = await conn.fetchval("SELECT extract(day FROM expires_at - created_at) FROM app_grants")
        assert days == 90
        await conn.execute("UPDATE app_grants SET expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    refused(await refresh(api.http, setup.app, setup.tokens["refresh_token"]))


async def test_without_offline_access_no_refresh_token(api):
    setup = await linked(api, scope="patient/Client.rs launch/patient")
    assert "refresh_token" not in setup.tokens
    assert setup.tokens["scope"] == "patient/Client.rs launch/patient"
