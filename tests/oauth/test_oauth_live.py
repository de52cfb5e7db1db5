"""Over a real socket: a live uvicorn on a random loopback port, and Authlib's synchronous httpx
OAuth2Client discovering the token endpoint and using each client authentication method."""

from __future__ import annotations

import asyncio
import time

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT

from tests.support.harness import Api
from tests.support.oauth import live_server, public_jwks, register, rsa_key


def exercise(base: str, secret_app: dict, jwt_app: dict, key) -> dict[str, str]:
    meta = httpx.get(f"{base}/.well-known/oauth-authorization-server").json()
    token_endpoint = meta["token_endpoint"]
    assert token_endpoint == f"{base}/oauth/token"
    scopes = {}
    for method in ("client_secret_basic", "client_secret_post"):
        with OAuth2Client(secret_app["client_id"], secret_app["client_secret"],
                          token_endpoint_auth_method=method) as client:
            token = client.fetch_token(token_endpoint, grant_type="client_credentials")
            assert client.get(f"{base}/v1/clients").status_code == 200
            scopes[method] = token["scope"]
    auth = PrivateKeyJWT(token_endpoint, alg="RS384", headers={"kid": key.kid},
                         claims={"exp": int(time.time()) + 200})
    with OAuth2Client(jwt_app["client_id"], key, token_endpoint_auth_method=auth) as client:
        token = client.fetch_token(token_endpoint, grant_type="client_credentials")
        assert client.get(f"{base}/v1/clients").status_code == 200
        scopes["private_key_jwt"] = token["scope"]
    return scopes


async def test_authlib_sync_client_against_a_live_server(db):
    async with Api.start(db) as api:
        org = await api.org()
        key = rsa_key()
        secret_app = await register(api, org, "system/Client.rs")
        jwt_app = await register(api, org, "system/Client.rs", jwks=public_jwks(key))
    with live_server(db) as base:
        scopes = await asyncio.to_thread(exercise, base, secret_app, jwt_app, key)
    assert scopes == dict.fromkeys(("client_secret_basic", "client_secret_post", "private_key_jwt"),
                                   "system/Client.rs")
