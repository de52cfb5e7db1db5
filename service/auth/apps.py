"""Registering organizations and apps (OAuth clients), and checking app secrets."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from uuid import UUID, uuid4

import orjson
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.assertions import check_jwks_url
from service.auth.scopes import ScopeError, parse_scopes


def hash_secret(secret: str) -> str:
    """Secrets are 256-bit random strings, so one SHA-256 is the right hash (as for API keys)."""
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(hash_secret(secret), stored)


PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def public_jwks_document(document: Any) -> dict[str, Any]:
    """A registered JWKS must be a valid key set of public keys, each with its own kid."""
    try:
        keys = KeySet.import_key_set(document)
    except (JoseError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the JWKS is not a valid key set: {exc}") from exc
    raw = document.get("keys", []) if isinstance(document, dict) else []
    if any(not isinstance(k, dict) or not k.get("kid") or PRIVATE_MEMBERS & set(k) for k in raw):
        raise ValueError("every JWKS key needs a kid, and only public (RSA or EC) keys may be registered")
    kids = [k.kid for k in keys.keys]
    if len(set(kids)) != len(kids):
        raise ValueError("kid values must be unique in the JWKS")
    return {"keys": raw}


async def create_org(conn: AsyncConnection, name: str) -> dict[str, Any]:
    org_id = uuid4()
    row = (
        await conn.execute(
            text("INSERT INTO organizations (id, name) VALUES (:id, :name) RETURNING id, name, created_at"),
            {"id": org_id, "name": name},
        )
    ).one()
    return dict(row._mapping)


async def create_app_record(
    conn: AsyncConnection, *, org_id: UUID, name: str, scopes: str, patient_id: UUID | None = None,
    jwks: dict[str, Any] | None = None, jwks_url: str | None = None, jwks_allow_private: bool = False,
) -> dict[str, Any]:
    """Register an app; returns its credentials (the secret only here, once). A JWKS URL must pass the outbound
    guard (``jwks_allow_private``: JWKS_ALLOW_PRIVATE_TARGETS), and does again at each fetch."""
    try:
        parsed = parse_scopes(scopes)
    except ScopeError as exc:
        raise ValueError(str(exc)) from exc
    if patient_id and any(s.context != "patient" for s in parsed):
        raise ValueError("an app bound to a patient may hold patient/ scopes only")
    if patient_id is not None:
        found = (await conn.execute(text("SELECT 1 FROM clients WHERE org_id = :org AND id = :id"),
                                    {"org": org_id, "id": patient_id})).first()
        if found is None:
            raise ValueError(f"the organization has no client {patient_id}")
    if jwks is not None:
        jwks = public_jwks_document(jwks)
    if jwks_url is not None:
        await check_jwks_url(jwks_url, jwks_allow_private)
    client_id = "app_" + secrets.token_urlsafe(12)
    secret = None if (jwks or jwks_url) else "sec_" + secrets.token_urlsafe(32)
    await conn.execute(
        text(
            "INSERT INTO apps (org_id, id, client_id, name, secret_hash, scopes, patient_id, jwks, jwks_url) "
            "VALUES (:org_id, :id, :client_id, :name, :secret_hash, :scopes, :patient_id, CAST(:jwks AS jsonb), "
            ":jwks_url)"
        ),
        {
            "org_id": org_id, "id": uuid4(), "client_id": client_id, "name": name,
            "secret_hash": hash_secret(secret) if secret else None, "scopes": [s.text for s in parsed],
            "patient_id": patient_id, "jwks": orjson.dumps(jwks).decode() if jwks else None, "jwks_url": jwks_url,
        },
    )
    out: dict[str, Any] = {"client_id": client_id, "org_id": str(org_id), "name": name,
                           "scopes": " ".join(s.text for s in parsed)}
    if secret:
        out["client_secret"] = secret
    if patient_id:
        out["patient"] = str(patient_id)
    return out
