"""Access tokens refused with 401 (RFC 6750 invalid_token) for every way they can be wrong."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from joserfc.jwk import ECKey

from tests.support.oauth import access_claims, b64, sign, unsigned

LIST = "/v1/clients"


def assert_invalid_token(resp) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.headers["content-type"].startswith("application/problem+json")


async def test_missing_token_is_401_with_bearer_challenge(api):
    resp = await api.client(None).get(LIST)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_real_token_works_and_forged_with_server_key_works(api):
    """Control: the forging helper makes tokens the service accepts, so the refusals below are real."""
    org = await api.org()
    assert (await api.client(await api.token(org, "system/Client.s")).get(LIST)).status_code == 200
    key = api.app.state.ctx.keys.current
    assert (await api.client(sign(key, access_claims(api, org, "system/Client.s"))).get(LIST)).status_code == 200


async def test_not_a_jwt_and_wrong_scheme(api):
    assert_invalid_token(await api.client("not-a-jwt").get(LIST))
    resp = await api.http.get(LIST, headers={"Authorization": "Basic YTpi"})
    assert resp.status_code == 401


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"exp": 1_000_000}, "expired"),
        ({"aud": "https://elsewhere.example"}, "wrong audience"),
        ({"iss": "https://evil.example"}, "wrong issuer"),
        ({"aud": None}, "no audience"),
        ({"exp": None}, "no expiry"),
        ({"org_id": None}, "no organization"),
        ({"nbf": 4_000_000_000}, "not yet valid"),
    ],
)
async def test_bad_claims_are_401(api, overrides, why):
    org = await api.org()
    key = api.app.state.ctx.keys.current
    token = sign(key, access_claims(api, org, "system/Client.s", **overrides))
    assert_invalid_token(await api.client(token).get(LIST))


async def test_bad_signature_is_401(api):
    org = await api.org()
    key = api.app.state.ctx.keys.current
    impostor = ECKey.generate_key("P-256", parameters={"kid": key.kid})  # same kid, other key
    assert_invalid_token(await api.client(sign(impostor, access_claims(api, org, "system/*.cruds"))).get(LIST))
    good = sign(key, access_claims(api, org, "system/Client.s"))
    head, body, sig = good.split(".")
    tampered_body = b64(json.dumps(access_claims(api, org, "system/*.cruds")).encode())
    assert_invalid_token(await api.client(f"{head}.{tampered_body}.{sig}").get(LIST))


async def test_alg_none_is_401(api):
    org = await api.org()
    kid = api.app.state.ctx.keys.current.kid
    for alg in ("none", "None", "NONE"):
        token = unsigned({"alg": alg, "kid": kid, "typ": "JWT"}, access_claims(api, org, "system/*.cruds"))
        assert_invalid_token(await api.client(token).get(LIST))


async def test_hs256_signed_with_the_public_key_is_401(api):
    """Algorithm confusion: an HMAC keyed with the published public key must not verify."""
    org = await api.org()
    jwks = (await api.http.get("/.well-known/jwks.json")).json()
    public = jwks["keys"][0]
    header = b64(json.dumps({"alg": "HS256", "kid": public["kid"], "typ": "JWT"}).encode())
    body = b64(json.dumps(access_claims(api, org, "system/*.cruds")).encode())
    for secret in (json.dumps(public).encode(), json.dumps(public, separators=(",", ":")).encode(),
                   api.app.state.ctx.keys.current.as_pem(private=False)):
        sig = b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
        assert_invalid_token(await api.client(f"{header}.{body}.{sig}").get(LIST))


async def test_unknown_kid_is_401(api):
    org = await api.org()
    stranger = ECKey.generate_key("P-256", parameters={"kid": "nobody-knows-me"})
    assert_invalid_token(await api.client(sign(stranger, access_claims(api, org, "system/*.cruds"))).get(LIST))


async def test_token_without_the_scope_is_403_naming_it(api):
    org = await api.org()
    resp = await api.client(await api.token(org, "system/Goal.rs")).get(LIST)
    assert resp.status_code == 403
    assert resp.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="system/Client.s"'


async def test_token_response_shape_and_headers(api):
    from tests.support.oauth import register

    org = await api.org()
    creds = await register(api, org, "system/Client.rs")
    auth = (creds["client_id"], creds["client_secret"])
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["pragma"] == "no-cache"
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int)
    assert 0 < body["expires_in"] <= 900
    assert body["scope"] == "system/Client.rs"
    resp = await api.http.post("/oauth/token", data={"grant_type": "password"}, auth=auth)
    assert (resp.status_code, resp.json()["error"]) == (400, "unsupported_grant_type")
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(creds["client_id"], "x"))
    assert (resp.status_code, resp.json()["error"]) == (401, "invalid_client")
