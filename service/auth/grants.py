"""A patient app's grants at the token endpoint (CONTRACT.md section 2, patient app linking).

- ``authorization_code``: the code ``/oauth/authorize`` issued for a redeemed app link, with its PKCE
  verifier (S256 only; Authlib's ``create_s256_code_challenge``). Codes are single-use and live 60 s;
  presenting one again revokes what it was exchanged for (RFC 6749 section 4.1.2). The exchange opens an
  *app grant*: every access token it and its refresh tokens issue names it (claim ``grant_id``).
- ``refresh_token``: rotated on every use. Presenting a rotated one again is reuse: the whole family (the
  grant) is revoked, and that revocation commits although the reply is ``invalid_grant``; a retry within
  REFRESH_GRACE_SECONDS of the rotation (concurrent requests of one app) gets the same new pair, which the
  rotation stored encrypted with a key derived from the old token (only its holder can open it). A family
  lives ``REFRESH_FAMILY_DAYS`` (90 at most); a refresh may narrow the scope, never widen it.

Codes and refresh tokens are 256-bit random strings stored as SHA-256. Before the organization is known,
``oauth_secret_org()`` answers the organization of the one secret whose hash it is given; everything else
runs in a transaction bound to that organization, under row-level security.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import orjson
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.apps import hash_secret
from service.auth.keycrypt import sealed_by
from service.auth.protocol import TOKEN_HEADERS, OAuthError, find_app, invalid_client, invalid_grant
from service.auth.scopes import ScopeError, grant_for_link, is_narrowing, parse_scopes
from service.auth.tokens import KEY_RELOAD_SECONDS
from service.collections.types import uuid7
from service.db import tenant_transaction
from service.errors import Unauthenticated
from service.http import JSONOut

CODE_TTL_SECONDS = 60
REFRESH_GRACE_SECONDS = 5
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 section 4.1
CREDENTIALS = ("client_secret", "client_assertion", "client_assertion_type")

_ORG = text("SELECT oauth_secret_org(:hash)")
_CODE = text("""
SELECT c.redirect_uri, c.code_challenge, c.scope, c.used_at IS NOT NULL AS used, c.grant_id, c.link_id,
       c.expires_at > now() AS fresh, l.app_id, l.client_id, l.revoked_at IS NOT NULL AS link_revoked,
       cl.deleted_at IS NOT NULL AS client_deleted
  FROM authorization_codes c
  JOIN app_links l ON l.org_id = c.org_id AND l.id = c.link_id
  JOIN clients cl ON cl.org_id = l.org_id AND cl.id = l.client_id
 WHERE c.code_hash = :hash FOR UPDATE OF c""")
_REFRESH = text("""
SELECT r.rotated_at IS NOT NULL AS rotated, r.successor,
       coalesce(clock_timestamp() - r.rotated_at <= make_interval(secs => :grace), false) AS in_grace,
       g.id AS grant_id, g.app_id, g.client_id, g.scope, g.expires_at > now() AS live,
       g.revoked_at IS NOT NULL OR l.revoked_at IS NOT NULL AS revoked, cl.deleted_at IS NOT NULL AS client_deleted
  FROM refresh_tokens r
  JOIN app_grants g ON g.org_id = r.org_id AND g.id = r.grant_id
  JOIN app_links l ON l.org_id = g.org_id AND l.id = g.link_id
  JOIN clients cl ON cl.org_id = g.org_id AND cl.id = g.client_id
 WHERE r.token_hash = :hash FOR UPDATE OF r""")
_REVOKE_GRANT = text("UPDATE app_grants SET revoked_at = coalesce(revoked_at, now()), "
                     "revoked_reason = coalesce(revoked_reason, :reason) WHERE id = :id")

Result = dict[str, Any] | OAuthError


# ---------------------------------------------------------------- the app and the secret's organization

def names_public_app(request: Request, form: dict[str, str]) -> bool:
    """The request names an app by client_id alone (token_endpoint_auth_method ``none``)."""
    return "client_id" in form and not request.headers.get("authorization") and not set(CREDENTIALS) & set(form)


async def public_app(request: Request, form: dict[str, str]) -> Any:
    if request.headers.get("authorization") or set(CREDENTIALS) & set(form):
        raise invalid_client("A public app names itself with client_id alone (no secret, no assertion)")
    if not form.get("client_id"):
        raise OAuthError("invalid_request", "client_id is required")
    app = await find_app(request, form["client_id"])
    if app is None or not app.public:
        raise invalid_client("Unknown client, or not a public app")
    return app


async def secret_org(request: Request, secret_hash: str) -> UUID | None:
    async with request.app.state.ctx.engine.connect() as conn:
        org_id: UUID | None = (await conn.execute(_ORG, {"hash": secret_hash})).scalar()
        return org_id


async def _in_tenant(request: Request, org_id: UUID, work: Callable[[AsyncConnection], Awaitable[Result]]) -> JSONOut:
    """Run ``work`` in one transaction of the organization; an OAuthError it *returns* is raised after the
    commit (what it wrote, such as a family revoked for reuse, stands); one it raises rolls back."""
    async with tenant_transaction(request.app.state.ctx.engine, org_id) as conn:
        result = await work(conn)
    if isinstance(result, OAuthError):
        raise result
    return JSONOut(result, headers=TOKEN_HEADERS)


async def revoke_grant(conn: AsyncConnection, grant_id: UUID, reason: str) -> None:
    await conn.execute(_REVOKE_GRANT, {"id": grant_id, "reason": reason})


async def _issue(request: Request, conn: AsyncConnection, app: Any, grant_id: UUID, patient: UUID, scope: str,
                 *, refresh: bool) -> dict[str, Any]:
    ctx = request.app.state.ctx
    await ctx.keys.refresh_if_stale(KEY_RELOAD_SECONDS)
    access, ttl = ctx.tokens.issue(org_id=app.org_id, client_id=app.client_id, scope=scope, patient_id=patient,
                                   grant_id=grant_id)
    body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": ttl, "scope": scope,
                            "patient": str(patient)}
    if refresh:
        token = secrets.token_urlsafe(32)
        await conn.execute(text("INSERT INTO refresh_tokens (org_id, token_hash, grant_id) VALUES (:org, :h, :g)"),
                           {"org": app.org_id, "h": hash_secret(token), "g": grant_id})
        body["refresh_token"] = token
    return body


# ---------------------------------------------------------------- authorization_code

async def authorization_code(request: Request, form: dict[str, str]) -> JSONOut:
    app = await public_app(request, form)
    for name in ("code", "redirect_uri"):
        if not form.get(name):
            raise OAuthError("invalid_request", f"{name} is required")
    code_hash = hash_secret(form["code"])
    org_id = await secret_org(request, code_hash)
    if org_id is None or org_id != app.org_id:
        raise invalid_grant("The authorization code is not valid")
    return await _in_tenant(request, org_id, lambda conn: _exchange(request, conn, app, form, code_hash))


def _code_problem(row: Any, app: Any, form: dict[str, str]) -> str | None:
    verifier = form.get("code_verifier") or ""
    checks = [
        (row.app_id != app.client_id, "The authorization code was issued to another app"),
        (not row.fresh, "The authorization code has expired"),
        (form["redirect_uri"] != row.redirect_uri, "redirect_uri differs from the authorization request's"),
        (not VERIFIER.fullmatch(verifier), "code_verifier is missing or malformed (RFC 7636: 43 to 128 characters)"),
        (not hmac.compare_digest(create_s256_code_challenge(verifier), row.code_challenge),
         "code_verifier does not match the code_challenge (S256)"),
        (row.link_revoked, "The app link was revoked"),
        (row.client_deleted, "The client was deleted"),
    ]
    return next((why for failed, why in checks if failed), None)


async def _exchange(request: Request, conn: AsyncConnection, app: Any, form: dict[str, str], code_hash: str) -> Result:
    row = (await conn.execute(_CODE, {"hash": code_hash})).first()
    if row is None:
        return invalid_grant("The authorization code is not valid")
    if row.used:
        if row.grant_id is not None:
            await revoke_grant(conn, row.grant_id, "authorization_code_reused")
        return invalid_grant("The authorization code was already used; what it was exchanged for is revoked")
    await conn.execute(text("UPDATE authorization_codes SET used_at = now() WHERE code_hash = :h"), {"h": code_hash})
    problem = _code_problem(row, app, form)  # any failure burns the code: it cannot be tried twice
    if problem:
        return invalid_grant(problem)
    scope = grant_for_link(row.scope, " ".join(app.scopes))
    if not scope:
        return invalid_grant("The app no longer holds the scopes this code was issued for")
    grant_id = uuid7()
    await conn.execute(
        text("INSERT INTO app_grants (org_id, id, link_id, client_id, app_id, scope, expires_at) "
             "VALUES (:org, :id, :link, :client, :app, :scope, now() + make_interval(days => :days))"),
        {"org": app.org_id, "id": grant_id, "link": row.link_id, "client": row.client_id, "app": app.client_id,
         "scope": scope, "days": request.app.state.ctx.settings.refresh_family_days},
    )
    await conn.execute(text("UPDATE authorization_codes SET grant_id = :g WHERE code_hash = :h"),
                       {"g": grant_id, "h": code_hash})
    return await _issue(request, conn, app, grant_id, row.client_id, scope,
                        refresh="offline_access" in scope.split())


# ---------------------------------------------------------------- refresh_token

async def refresh_token(request: Request, form: dict[str, str]) -> JSONOut:
    app = await public_app(request, form)
    token = form.get("refresh_token")
    if not token:
        raise OAuthError("invalid_request", "refresh_token is required")
    token_hash = hash_secret(token)
    org_id = await secret_org(request, token_hash)
    if org_id is None or org_id != app.org_id:
        raise invalid_grant("The refresh token is not valid")
    return await _in_tenant(request, org_id, lambda conn: _rotate(request, conn, app, form, token))


def _narrowed(requested: str | None, original: str, app: Any) -> str | OAuthError:
    """The scope of the new access token: the family's, or a narrowing of it; bounded by the app's scopes now."""
    scope = original
    if requested and requested.strip():
        try:
            parse_scopes(requested)
        except ScopeError as exc:
            return OAuthError("invalid_scope", str(exc))
        if not is_narrowing(requested, original):
            return OAuthError("invalid_scope", "A refresh may narrow the scope originally granted, never widen it")
        scope = grant_for_link(requested, original)
    scope = grant_for_link(scope, " ".join(app.scopes))
    return scope or OAuthError("invalid_scope", "None of the requested scopes is still allowed for this app")


async def _rotate(request: Request, conn: AsyncConnection, app: Any, form: dict[str, str], token: str) -> Result:
    token_hash = hash_secret(token)
    row = (await conn.execute(_REFRESH, {"hash": token_hash, "grace": REFRESH_GRACE_SECONDS})).first()
    if row is None or row.app_id != app.client_id:
        return invalid_grant("The refresh token is not valid")
    if row.revoked or not row.live or row.client_deleted:
        return invalid_grant("The refresh token's family was revoked or has expired")
    if row.rotated:
        if row.in_grace and row.successor is not None:
            pair = orjson.loads(sealed_by(token).decrypt(bytes(row.successor)))
            expires = pair.pop("exp")
            return {**pair, "expires_in": max(1, expires - int(time.time()))}
        await revoke_grant(conn, row.grant_id, "refresh_token_reused")
        return invalid_grant("The refresh token was already used: its whole family is now revoked")
    scope = _narrowed(form.get("scope"), row.scope, app)
    if isinstance(scope, OAuthError):
        return scope
    limiter = request.app.state.ctx.token_limiter
    if limiter is not None and limiter.enabled:  # per family: a runaway app refreshing in a loop (rolls back)
        await limiter.enforce("grant", f"{app.client_id}|{row.grant_id}")
    body = await _issue(request, conn, app, row.grant_id, row.client_id, scope, refresh=True)
    sealed = sealed_by(token).encrypt(orjson.dumps({**body, "exp": int(time.time()) + body["expires_in"]}))
    await conn.execute(text("UPDATE refresh_tokens SET rotated_at = clock_timestamp(), successor = :s "
                            "WHERE token_hash = :h"), {"s": sealed, "h": token_hash})
    return body


# ---------------------------------------------------------------- RFC 7009 for public apps

async def revoke_for_public_app(request: Request, form: dict[str, str]) -> None:
    """A public app revokes one of its refresh tokens (the whole family goes) or one of its access tokens."""
    app = await public_app(request, form)
    token = form.get("token")
    if not token:
        raise OAuthError("invalid_request", "The token parameter is required")
    token_hash = hash_secret(token)
    if await secret_org(request, token_hash) == app.org_id:
        async with tenant_transaction(request.app.state.ctx.engine, app.org_id) as conn:
            await conn.execute(
                text("UPDATE app_grants g SET revoked_at = coalesce(g.revoked_at, now()), "
                     "revoked_reason = coalesce(g.revoked_reason, 'revoked_by_app') FROM refresh_tokens r "
                     "WHERE r.token_hash = :h AND g.org_id = r.org_id AND g.id = r.grant_id AND g.app_id = :app"),
                {"h": token_hash, "app": app.client_id},
            )
        return
    tokens = request.app.state.ctx.tokens
    try:
        who = await tokens.verify(token)
    except Unauthenticated:
        return
    if who.app_id == app.client_id and who.org_id == app.org_id:
        await tokens.revoke(who)
