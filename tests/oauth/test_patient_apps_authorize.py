"""`GET /oauth/authorize`: a wrong client or redirect URI is a 400 with no redirect; every other error redirects
as RFC 6749 section 4.1.2.1 says, with the state; S256 only; unknown parameters ignored; `aud` checked when
sent; a link code is single-use, bound to its app and client, and expires."""

from __future__ import annotations

import uuid

import pytest

from tests.support.oauth import register
from tests.support.patient_apps import REDIRECT, authorize, exchange, new_link, pkce, public_app, redirected, world


def not_redirected(resp, error: str) -> None:
    assert resp.status_code == 400, resp.text
    assert "location" not in resp.headers
    assert resp.json()["error"] == error


async def test_wrong_client_or_redirect_uri_is_a_400_without_redirect(api):
    org, _staff, _client, app, link = await world(api)
    _, challenge = pkce()
    not_redirected(await authorize(api.http, {"client_id": "app_nobody"}, link["link_code"], challenge),
                   "invalid_client")
    confidential = await register(api, org, "patient/Client.rs")
    not_redirected(await authorize(api.http, confidential, link["link_code"], challenge), "invalid_client")
    for uri in (REDIRECT + "/", REDIRECT.upper(), REDIRECT + "?x=1", "https://evil.example/callback", None):
        not_redirected(await authorize(api.http, app, link["link_code"], challenge, redirect_uri=uri),
                       "invalid_request")
    resp = await api.http.get("/oauth/authorize", params=[("client_id", app["client_id"]),
                                                         ("client_id", app["client_id"]), ("redirect_uri", REDIRECT)])
    not_redirected(resp, "invalid_request")
    # None of that redeemed the link.
    assert await api.db.fetchval("SELECT redeemed_at FROM app_links") is None


@pytest.mark.parametrize(("params", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": "too-short"}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),
    ({"aud": "https://other.example/fhir"}, "invalid_request"),
    ({"scope": "patient/Goal.rs"}, "invalid_scope"),
    ({"scope": "patient/Nothing.rs"}, "invalid_scope"),
    ({"link_code": None}, "invalid_request"),
])
async def test_errors_redirect_with_the_state_and_issue_no_code(api, params, error):
    _org, _staff, _client, app, link = await world(api)
    _, challenge = pkce()
    resp = await authorize(api.http, app, params.pop("link_code", link["link_code"]), challenge, state="s-42",
                           **params)
    query = redirected(resp)
    assert "code" not in query
    assert (query["error"], query["state"]) == (error, "s-42")
    assert query["error_description"]
    assert resp.headers["cache-control"] == "no-store"
    assert await api.db.fetchval("SELECT count(*) FROM authorization_codes") == 0
    assert await api.db.fetchval("SELECT redeemed_at FROM app_links") is None


async def test_missing_state_and_repeated_parameters(api):
    _org, _staff, _client, app, link = await world(api)
    _, challenge = pkce()
    query = redirected(await authorize(api.http, app, link["link_code"], challenge, state=""))
    assert query["error"] == "invalid_request"
    assert "state" not in query
    resp = await api.http.get("/oauth/authorize", params=[
        ("response_type", "code"), ("client_id", app["client_id"]), ("redirect_uri", REDIRECT), ("state", "s"),
        ("code_challenge", challenge), ("code_challenge_method", "S256"), ("link_code", link["link_code"]),
        ("scope", "patient/Client.rs"), ("scope", "patient/Measurement.crs")])
    assert redirected(resp)["error"] == "invalid_request"


async def test_unknown_parameters_are_ignored_and_smart_parameters_accepted(api):
    _org, _staff, client, app, link = await world(api)
    verifier, challenge = pkce()
    resp = await authorize(api.http, app, link["link_code"].lower().replace("-", " "), challenge,
                           aud="http://testserver/fhir/R4", scope="patient/Client.rs launch/patient openid",
                           nonce="n", prompt="none", foo="bar")
    query = redirected(resp)
    assert query["state"] == "st-1"
    assert query["code"]
    token = await exchange(api.http, app, query["code"], verifier)
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "patient/Client.rs launch/patient"
    assert token.json()["patient"] == client["id"]


async def test_redirect_uri_query_is_kept(api):
    uri = "https://mood.example/cb?tenant=a"
    _org, _staff, _client, app, link = await world(api, redirect_uris=[REDIRECT, uri])
    _, challenge = pkce()
    resp = await authorize(api.http, app, link["link_code"], challenge, redirect_uri=uri)
    assert resp.status_code == 302
    assert resp.headers["location"].startswith(uri + "&code=")


async def test_a_link_code_is_single_use_bound_and_expires(api):
    org, staff, client, app, link = await world(api)
    _, challenge = pkce()
    other_app = await public_app(api, org)
    denied = redirected(await authorize(api.http, other_app, link["link_code"], challenge))
    assert denied["error"] == "access_denied"  # bound to its app (and the attempt did not use it up)
    assert redirected(await authorize(api.http, app, link["link_code"], challenge))["code"]
    assert redirected(await authorize(api.http, app, link["link_code"], challenge))["error"] == "access_denied"
    assert redirected(await authorize(api.http, app, "AAAAA-BBBBB", challenge))["error"] == "access_denied"

    expiring = await new_link(staff, client["id"], app["client_id"])
    conn = await api.db.connect()
    try:
        await conn.execute("UPDATE app_links SET expires_at = now() - interval '1 second' WHERE id = $1",
                           uuid.UUID(expiring["id"]))
    finally:
        await conn.close()
    assert redirected(await authorize(api.http, app, expiring["link_code"], challenge))["error"] == "access_denied"

    revoked = await new_link(staff, client["id"], app["client_id"])
    await staff.delete(f"/v1/clients/{client['id']}/app-links/{revoked['id']}")
    assert redirected(await authorize(api.http, app, revoked["link_code"], challenge))["error"] == "access_denied"

    deleted = await new_link(staff, client["id"], app["client_id"])
    assert (await staff.delete(f"/v1/clients/{client['id']}")).status_code == 204
    assert redirected(await authorize(api.http, app, deleted["link_code"], challenge))["error"] == "access_denied"


async def test_a_code_issued_before_the_link_was_revoked_is_refused(api):
    _org, staff, client, app, link = await world(api)
    verifier, challenge = pkce()
    code = redirected(await authorize(api.http, app, link["link_code"], challenge))["code"]
    await staff.delete(f"/v1/clients/{client['id']}/app-links/{link['id']}")
    resp = await exchange(api.http, app, code, verifier)
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_grant")
