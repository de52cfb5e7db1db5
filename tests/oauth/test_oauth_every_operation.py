"""Every operation under /v1 (read from the OpenAPI document, so new routes are covered by default):
no token, a token from an unconfigured issuer, a revoked token → 401; a configured external issuer's
token without the scope → 403 naming it (so it authenticated)."""

from __future__ import annotations

import json
import re
import uuid

from service.settings import ExternalIssuer
from tests.support.harness import Api
from tests.support.oauth import AUD, EHR, ehr_token, public_jwks, register, rsa_key

METHODS = ("get", "post", "put", "patch", "delete")


def operations(app) -> list[tuple[str, str]]:
    ops = []
    for path, item in app.openapi()["paths"].items():
        if not path.startswith("/v1"):
            continue
        concrete = re.sub(r"\{[^}]+\}", lambda _m: str(uuid.uuid4()), path)
        ops.extend((method.upper(), concrete) for method in METHODS if method in item)
    return ops


async def test_every_operation_refuses_missing_unknown_issuer_and_revoked_tokens(api, tmp_path):
    ops = operations(api.app)
    assert len(ops) > 20
    org = await api.org()
    key = rsa_key()
    stranger = ehr_token(key, org.id, scope=("system/*.cruds", "system/AuditEvent.s"))
    creds = await register(api, org, "system/*.cruds system/AuditEvent.s")  # every scope: refusals are the tokens'
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(creds["client_id"], creds["client_secret"]))
    revoked = resp.json()["access_token"]
    await api.http.post("/oauth/revoke", data={"token": revoked}, auth=(creds["client_id"], creds["client_secret"]))
    for method, path in ops:
        for token in (None, stranger, revoked):
            resp = await api.client(token).request(method, path, json={})
            assert resp.status_code == 401, (method, path, token is None, resp.text)
            assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_every_operation_authenticates_a_configured_external_issuer(api, tmp_path):
    org = await api.org()
    key = rsa_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(public_jwks(key)))
    conf = ExternalIssuer(issuer=EHR, jwks_file=path, audience=AUD, org_claim="tenant", scope_claim="scp")
    token = ehr_token(key, org.id, scope=())
    async with Api.start(api.db, external_issuers=[conf]) as rs:
        for method, url in operations(rs.app):
            resp = await rs.client(token).request(method, url, json={})
            assert resp.status_code == 403, (method, url, resp.text)
            assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]
