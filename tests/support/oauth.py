"""Helpers for the OAuth tests: registering apps with JWKS, signing assertions and forging tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from service.app import create_app
from service.auth.apps import create_app_record
from service.db import make_engine
from tests.support.harness import Api, Database, Org

TOKEN_URL = "http://testserver/oauth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EHR = "https://ehr.example/oauth2"  # an external issuer (resource-server mode) and the audience it signs for
AUD = "https://strengths.example/api"


def rsa_key(kid: str | None = None) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid or secrets.token_hex(6), "alg": "RS384"})


def ec_key(kid: str | None = None) -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": kid or secrets.token_hex(6), "alg": "ES384"})


def without_alg(key: Any) -> Any:
    """The same key pair, not bound to one algorithm (to sign with an algorithm the server must refuse)."""
    data = {k: v for k, v in key.as_dict(private=True).items() if k != "alg"}
    return type(key).import_key(data)


def public_jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


async def register(api: Api, org: Org, scopes: str, *, patient: UUID | None = None,
                   jwks: dict[str, Any] | None = None, jwks_url: str | None = None) -> dict[str, Any]:
    engine = make_engine(api.db.owner_url, api.db.settings(), pool=False)
    try:
        async with engine.begin() as conn:
            return await create_app_record(conn, org_id=org.id, name="test app", scopes=scopes,
                                           patient_id=patient, jwks=jwks, jwks_url=jwks_url,
                                           jwks_allow_private=api.app.state.ctx.settings.jwks_allow_private_targets)
    finally:
        await engine.dispose()


def assertion(key: Any, client_id: str, *, alg: str | None = None, aud: str = TOKEN_URL, lifetime: int = 240,
              jti: str | None = None, kid: str | None = None, headers: dict[str, Any] | None = None,
              **claims: Any) -> str:
    now = int(time.time())
    alg = alg or ("RS384" if isinstance(key, RSAKey) else "ES384")
    body = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16) if jti is None else jti, **claims}
    body = {k: v for k, v in body.items() if v != ""}  # an empty value means: leave the claim out
    header = {"alg": alg, "kid": kid or key.kid, "typ": "JWT", **(headers or {})}
    return jwt.encode(header, body, key, algorithms=[alg])


def assertion_form(key: Any, client_id: str, scope: str | None = None, **kw: Any) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(key, client_id, **kw)}
    if scope:
        form["scope"] = scope
    return form


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


def access_claims(api: Api, org: Org, scope: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "http://testserver", "sub": "app_forged", "aud": "http://testserver", "iat": now,
              "nbf": now, "exp": now + 300, "jti": secrets.token_urlsafe(12), "client_id": "app_forged",
              "org_id": str(org.id), "scope": scope}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key: Any, claims: dict[str, Any], alg: str = "ES256", kid: str | None = None) -> str:
    return jwt.encode({"alg": alg, "kid": kid or key.kid, "typ": "at+jwt"}, claims, key, algorithms=[alg])


@contextmanager
def jwks_server(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """A loopback HTTP server publishing a JWKS (the document may be changed while it runs)."""
    state = {"doc": document, "hits": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state["hits"] += 1
            body = json.dumps(state["doc"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def live_server(db: Database, **settings: Any) -> Iterator[str]:
    """The app served by uvicorn on a random port of 127.0.0.1 (its defaults: proxy headers believed from
    FORWARDED_ALLOW_IPS, 127.0.0.1 unless set), in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = create_app(db.settings(**settings).model_copy(update={"host": "127.0.0.1", "port": port,
                                                                 "public_url": base}))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def ehr_token(key, org_id, *, scope=("system/Client.rs",), aud=AUD, iss=EHR, lifetime=300, **extra) -> str:
    """A token of the external issuer (an EHR's authorization server) in resource-server mode."""
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "sub": "dr-who", "azp": "ehr-app", "iat": now, "exp": now + lifetime,
              "jti": secrets.token_hex(8), "tenant": str(org_id), "scp": list(scope), **extra}
    return jwt.encode({"alg": "RS384", "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=["RS384"])


async def secret_token(api, creds, scope: str | None = None) -> str:
    """An access token for registered ``creds`` (client_secret_basic)."""
    data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    resp = await api.http.post("/oauth/token", data=data, auth=(creds["client_id"], creds["client_secret"]))
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]
