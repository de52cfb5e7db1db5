"""The authorization server: token endpoint (client credentials with a secret or a private_key_jwt
assertion), JWKS, RFC 8414 and SMART discovery, RFC 7662 introspection and RFC 7009 revocation."""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Request
from sqlalchemy import text

from service.auth.apps import secret_matches
from service.auth.assertions import (
    ASSERTION_ALGS,
    ASSERTION_TYPE,
    AssertionError_,
    JwksCache,
    unverified_parts,
    verify_assertion,
)
from service.auth.principal import Principal
from service.auth.scopes import FHIR_ALIASES, RESOURCES, ScopeError, grant, parse_scopes
from service.db import tenant_transaction
from service.errors import Unauthenticated
from service.http import JSONOut

router = APIRouter(tags=["OAuth"])
TOO_MANY = {"description": "Too many calls for this client id (TOKEN_RATE_LIMIT_REQUESTS): a problem with the "
            "RateLimit fields and Retry-After"}

TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
GRANT_TYPES = ["client_credentials"]
KEY_RELOAD_SECONDS = 60.0
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.error, self.description, self.status, self.headers = error, description, status, headers or {}

    def response(self) -> JSONOut:
        return JSONOut({"error": self.error, "error_description": self.description}, status_code=self.status,
                       headers={**TOKEN_HEADERS, **self.headers})


def scopes_supported() -> list[str]:
    aliases = [name for name in FHIR_ALIASES if name not in RESOURCES]  # the FHIR facade's names (bulk export)
    return [f"{ctx}/{res}.{perm}" for ctx in ("system", "patient") for res in ("*", *RESOURCES, *aliases)
            for perm in ("cruds", "rs")]


def token_endpoint_url(base: str) -> str:
    return f"{base}/oauth/token"


def metadata(base: str) -> dict[str, Any]:
    return {
        "issuer": base,
        "token_endpoint": token_endpoint_url(base),
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "scopes_supported": scopes_supported(),
        "response_types_supported": ["token"],
    }


@router.get("/.well-known/oauth-authorization-server", operation_id="oauth_metadata",
            summary="RFC 8414 authorization server metadata")
async def authorization_server_metadata(request: Request) -> JSONOut:
    return JSONOut(metadata(request.app.state.ctx.settings.issuer))


@router.get("/.well-known/jwks.json", operation_id="jwks", summary="Public keys that verify access tokens")
async def jwks(request: Request) -> JSONOut:
    return JSONOut(request.app.state.ctx.keys.public_jwks(), headers={"Cache-Control": "public, max-age=300"})


def _basic_credentials(header: str, form: dict[str, str]) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise invalid_client("Use HTTP Basic, form credentials or a client assertion")
    if "client_secret" in form or "client_assertion" in form:
        raise OAuthError("invalid_request", "Send the client credentials one way only")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
        cid, sep, secret = decoded.partition(":")
        if not sep:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_client("Malformed Basic credentials") from exc
    return unquote(cid), unquote(secret)


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401, {"WWW-Authenticate": 'Basic realm="token"'})


async def _find_app(request: Request, client_id: str) -> Any:
    async with request.app.state.ctx.engine.connect() as conn:
        app = (await conn.execute(text("SELECT * FROM auth_app(:cid)"), {"cid": client_id})).first()
    if app is None or app.disabled_at is not None:
        return None
    return app


def jwks_cache(request: Request) -> JwksCache:
    cache = getattr(request.app.state, "jwks_cache", None)
    if cache is None:
        cache = request.app.state.jwks_cache = JwksCache(
            allow_private=request.app.state.ctx.settings.jwks_allow_private_targets)
    return cache


async def _limit_client(request: Request, form: dict[str, str]) -> None:
    """The OAuth endpoints' quota, counted before the client is authenticated (so guesses count too) per
    presented client id, or per address when none is readable: 429 problem with RateLimit and Retry-After."""
    limiter = request.app.state.ctx.token_limiter
    if limiter is None or not limiter.enabled:
        return
    client_id = form.get("client_id")
    header = request.headers.get("authorization")
    if header and not client_id:
        with contextlib.suppress(OAuthError):
            client_id = _basic_credentials(header, {})[0]
    key = f"client:{client_id}" if client_id else f"addr:{request.client.host if request.client else '-'}"
    await limiter.enforce("oauth", key[:300])


async def authenticate_app(request: Request, form: dict[str, str]) -> Any:
    """The app calling the token, introspection or revocation endpoint, by any of the three methods
    (client_secret_basic, client_secret_post, private_key_jwt), never two at once."""
    await _limit_client(request, form)
    header = request.headers.get("authorization")
    if header:
        client_id, secret = _basic_credentials(header, form)
        if form.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
    elif "client_assertion_type" in form or "client_assertion" in form:
        return await _assertion_app(request, form)
    elif "client_id" in form and "client_secret" in form:
        client_id, secret = form["client_id"], form["client_secret"]
    else:
        raise invalid_client("Client authentication is required")
    app = await _find_app(request, client_id)
    if app is None or not secret_matches(secret, app.secret_hash):
        raise invalid_client("Unknown client or wrong secret")
    return app


async def _assertion_app(request: Request, form: dict[str, str]) -> Any:
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise invalid_client(f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = form.get("client_assertion") or ""
    if "client_secret" in form:
        raise OAuthError("invalid_request", "Send the client credentials one way only")
    ctx = request.app.state.ctx
    try:
        _, claims = unverified_parts(assertion)
        client_id = claims.get("iss")
        if not isinstance(client_id, str) or form.get("client_id", client_id) != client_id:
            raise AssertionError_("The assertion's iss must be the client_id")
        app = await _find_app(request, client_id)
        if app is None or not (app.jwks or app.jwks_url):
            raise AssertionError_("Unknown client, or one without a registered JWKS")
        await verify_assertion(ctx.engine, jwks_cache(request), app, assertion,
                               token_endpoint=token_endpoint_url(ctx.settings.issuer))
    except AssertionError_ as exc:
        raise invalid_client(str(exc)) from exc
    return app


async def read_form(request: Request) -> dict[str, str]:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Send the request as application/x-www-form-urlencoded")
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body), max_num_fields=20)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_request", "The form could not be parsed") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise OAuthError("invalid_request", f"Parameter {key} is repeated")
        form[key] = value
    return form


TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},  # RFC 6749 3.2: unknown parameters are ignored
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": GRANT_TYPES},
                        "scope": {"type": "string"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                        "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
                        "client_assertion": {"type": "string"},
                    },
                }
            }
        },
    },
}


@router.post("/oauth/token", operation_id="token", summary="Issue an access token (client credentials)",
             openapi_extra=TOKEN_FORM, responses={400: {"description": "OAuth error"},
                                                  401: {"description": "Client authentication failed"}, 429: TOO_MANY})
async def token(request: Request) -> JSONOut:
    try:
        return await _token(request)
    except OAuthError as err:
        return err.response()


async def _token(request: Request) -> JSONOut:
    form = await read_form(request)
    if form.get("grant_type") not in GRANT_TYPES:
        raise OAuthError("unsupported_grant_type", "Only client_credentials is supported")
    app = await authenticate_app(request, form)
    ctx = request.app.state.ctx
    await ctx.keys.refresh_if_stale(KEY_RELOAD_SECONDS)  # picks up `keys rotate` run elsewhere
    requested = form.get("scope")
    try:
        parse_scopes(requested)
    except ScopeError as exc:
        raise OAuthError("invalid_scope", str(exc)) from exc
    scope = grant(requested, " ".join(app.scopes))
    if not scope:
        raise OAuthError("invalid_scope", "None of the requested scopes is allowed for this app")
    access_token, ttl = ctx.tokens.issue(org_id=app.org_id, client_id=app.client_id, scope=scope,
                                         patient_id=app.patient_id)
    body_out: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "expires_in": ttl,
                                "scope": scope}
    if app.patient_id:
        body_out["patient"] = str(app.patient_id)
    return JSONOut(body_out, headers=TOKEN_HEADERS)


SMART_CAPABILITIES = [
    "client-confidential-asymmetric", "client-confidential-symmetric", "permission-v2", "permission-v1",
    "permission-patient",
]


@router.get("/fhir/R4/.well-known/smart-configuration", operation_id="smart_configuration",
            summary="SMART App Launch 2 configuration")
async def smart_configuration(request: Request) -> JSONOut:
    meta = metadata(request.app.state.ctx.settings.issuer)
    keep = ("issuer", "jwks_uri", "token_endpoint", "introspection_endpoint", "revocation_endpoint",
            "grant_types_supported", "token_endpoint_auth_methods_supported",
            "token_endpoint_auth_signing_alg_values_supported", "scopes_supported")
    return JSONOut({**{k: meta[k] for k in keep}, "capabilities": SMART_CAPABILITIES,
                    "code_challenge_methods_supported": ["S256"]})


AUTH_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},  # RFC 6749 3.2: unknown parameters are ignored
                    "required": ["token"],
                    "properties": {
                        "token": {"type": "string"},
                        "token_type_hint": {"type": "string"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                        "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
                        "client_assertion": {"type": "string"},
                    },
                }
            }
        },
    },
}


async def _token_of_app(request: Request) -> tuple[Any, dict[str, str], Principal | None]:
    """(calling app, form, principal of the presented token if it is valid and of the app's organization)."""
    form = await read_form(request)
    app = await authenticate_app(request, form)
    if not form.get("token"):
        raise OAuthError("invalid_request", "The token parameter is required")
    try:
        who = await request.app.state.ctx.tokens.verify(form["token"])
    except Unauthenticated:
        return app, form, None
    return app, form, (who if who.org_id == app.org_id else None)


@router.post("/oauth/introspect", operation_id="introspect", summary="RFC 7662 token introspection",
             openapi_extra=AUTH_FORM, responses={400: {"description": "OAuth error"},
                                                 401: {"description": "Client authentication failed"}, 429: TOO_MANY})
async def introspect(request: Request) -> JSONOut:
    try:
        _app, _form, who = await _token_of_app(request)
    except OAuthError as err:
        return err.response()
    if who is None:
        return JSONOut({"active": False}, headers=TOKEN_HEADERS)
    body: dict[str, Any] = {
        "active": True, "scope": " ".join(s.text for s in who.scopes), "client_id": who.app_id,
        "token_type": "Bearer", "exp": who.expires_at, "iss": who.issuer, "sub": who.subject,
        "org_id": str(who.org_id),
    }
    if who.token_id:
        body["jti"] = who.token_id
    if who.patient_id:
        body["patient"] = str(who.patient_id)
    return JSONOut(body, headers=TOKEN_HEADERS)


@router.post("/oauth/revoke", operation_id="revoke", summary="RFC 7009 token revocation",
             openapi_extra=AUTH_FORM, responses={400: {"description": "OAuth error"},
                                                 401: {"description": "Client authentication failed"}, 429: TOO_MANY})
async def revoke(request: Request) -> JSONOut:
    """Revoke an access token issued to the calling app. Answers 200 for unknown, invalid, expired or
    foreign tokens too (RFC 7009 section 2.2), so the answer tells nothing about them."""
    try:
        app, _form, who = await _token_of_app(request)
    except OAuthError as err:
        return err.response()
    ctx = request.app.state.ctx
    if who is not None and who.token_id and who.app_id == app.client_id and who.issuer == ctx.settings.issuer:
        async with tenant_transaction(ctx.engine, app.org_id) as conn:
            await conn.execute(text("DELETE FROM revoked_tokens WHERE expires_at < now() - interval '1 hour'"))
            await conn.execute(
                text("INSERT INTO revoked_tokens (jti, org_id, client_id, expires_at) "
                     "VALUES (:jti, :org, :cid, to_timestamp(:exp)) ON CONFLICT (jti) DO NOTHING"),
                {"jti": who.token_id, "org": app.org_id, "cid": app.client_id, "exp": who.expires_at},
            )
    return JSONOut({}, headers=TOKEN_HEADERS)
