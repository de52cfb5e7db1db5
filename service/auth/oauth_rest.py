"""The token endpoint (client credentials with a secret or a private_key_jwt assertion; a patient app's
authorization code and refresh token grants, in service.auth.grants), RFC 7662 introspection and RFC 7009
revocation. Every call runs under the abuse limit on failed authentications (service.auth.protocol)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request

from service.api.http import JSONOut
from service.auth import grants
from service.auth.apps import secret_matches
from service.auth.assertions import ASSERTION_TYPE, AssertionError_, JwksCache, unverified_parts, verify_assertion
from service.auth.discovery_rest import GRANT_TYPES, token_endpoint_url
from service.auth.principal import Principal
from service.auth.protocol import (
    TOKEN_HEADERS,
    OAuthError,
    basic_credentials,
    find_app,
    guarded,
    invalid_client,
    presented_client_id,
)
from service.auth.scopes import ScopeError, grant, parse_scopes
from service.auth.tokens import KEY_RELOAD_SECONDS
from service.errors import Unauthenticated

router = APIRouter(tags=["OAuth"])
TOO_MANY = {"description": "Too many failed authentications from this address (TOKEN_FAILURE_LIMIT, "
            "TOKEN_FAILURE_LIMIT_PER_CLIENT), or too many calls by this app (TOKEN_RATE_LIMIT_REQUESTS): a problem "
            "with the RateLimit fields and Retry-After"}


def jwks_cache(request: Request) -> JwksCache:
    cache = getattr(request.app.state, "jwks_cache", None)
    if cache is None:
        cache = request.app.state.jwks_cache = JwksCache(
            allow_private=request.app.state.ctx.settings.jwks_allow_private_targets)
    return cache


async def authenticate_app(request: Request, form: dict[str, str]) -> Any:
    """The app calling the token, introspection or revocation endpoint, by any of the three methods
    (client_secret_basic, client_secret_post, private_key_jwt), never two at once. Once authenticated, the
    call counts against that app's own quota (TOKEN_RATE_LIMIT_REQUESTS), which only its credentials spend."""
    header = request.headers.get("authorization")
    if header:
        client_id, secret = basic_credentials(header, form)
        if form.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
    elif "client_assertion_type" in form or "client_assertion" in form:
        app = await _assertion_app(request, form)
        await _app_quota(request, app.client_id)
        return app
    elif "client_id" in form and "client_secret" in form:
        client_id, secret = form["client_id"], form["client_secret"]
    else:
        raise invalid_client("Client authentication is required")
    app = await find_app(request, client_id)
    if app is None or not secret_matches(secret, app.secret_hash):
        raise invalid_client("Unknown client or wrong secret")
    await _app_quota(request, app.client_id)
    return app


async def _app_quota(request: Request, client_id: str) -> None:
    limiter = request.app.state.ctx.token_limiter
    if limiter is not None and limiter.enabled:
        await limiter.enforce("oauth", client_id)


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
        app = await find_app(request, client_id)
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


def form_body(required: str, **fields: dict[str, Any]) -> dict[str, Any]:
    """An ``application/x-www-form-urlencoded`` request body for OpenAPI: ``fields`` and the client
    authentication fields every OAuth endpoint takes; unknown parameters are ignored (RFC 6749 3.2)."""
    client_auth = {"client_id": {"type": "string"}, "client_secret": {"type": "string"},
                   "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
                   "client_assertion": {"type": "string"}}
    return {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "additionalProperties": {"type": "string"}, "required": [required],
        "properties": {**fields, **client_auth},
    }}}}}


STRING: dict[str, Any] = {"type": "string"}
TOKEN_FORM = form_body(
    "grant_type", grant_type={"type": "string", "enum": GRANT_TYPES}, scope=STRING, code=STRING,
    redirect_uri=STRING, code_verifier=STRING, refresh_token=STRING,
)


@router.post("/oauth/token", operation_id="token",
             summary="Issue an access token (client credentials, authorization code with PKCE, refresh token)",
             openapi_extra=TOKEN_FORM, responses={400: {"description": "OAuth error"},
                                                  401: {"description": "Client authentication failed"}, 429: TOO_MANY})
async def token(request: Request) -> JSONOut:
    try:
        form = await read_form(request)
        return await guarded(request, presented_client_id(request, form), lambda: _token(request, form))
    except OAuthError as err:
        return err.response()


async def _token(request: Request, form: dict[str, str]) -> JSONOut:
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        return await grants.authorization_code(request, form)
    if grant_type == "refresh_token":
        return await grants.refresh_token(request, form)
    if grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", f"grant_type must be one of {', '.join(GRANT_TYPES)}")
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


AUTH_FORM = form_body("token", token=STRING, token_type_hint=STRING)


async def _token_of_app(request: Request, form: dict[str, str]) -> tuple[Any, Principal | None]:
    """(calling app, principal of the presented token if it is valid and of the app's organization)."""
    app = await authenticate_app(request, form)
    if not form.get("token"):
        raise OAuthError("invalid_request", "The token parameter is required")
    try:
        who = await request.app.state.ctx.tokens.verify(form["token"])
    except Unauthenticated:
        return app, None
    return app, (who if who.org_id == app.org_id else None)


@router.post("/oauth/introspect", operation_id="introspect", summary="RFC 7662 token introspection",
             openapi_extra=AUTH_FORM, responses={400: {"description": "OAuth error"},
                                                 401: {"description": "Client authentication failed"}, 429: TOO_MANY})
async def introspect(request: Request) -> JSONOut:
    try:
        form = await read_form(request)
        _app, who = await guarded(request, presented_client_id(request, form), lambda: _token_of_app(request, form))
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
    """Revoke an access token issued to the calling app, or (for a public app, which names itself with
    client_id alone) one of its refresh tokens, which revokes the token's whole family. Answers 200 for
    unknown, invalid, expired or foreign tokens too (RFC 7009 section 2.2), so the answer tells nothing."""
    try:
        form = await read_form(request)
        await guarded(request, presented_client_id(request, form), lambda: _revoke(request, form))
    except OAuthError as err:
        return err.response()
    return JSONOut({}, headers=TOKEN_HEADERS)


async def _revoke(request: Request, form: dict[str, str]) -> None:
    if grants.names_public_app(request, form):
        await grants.revoke_for_public_app(request, form)
        return
    app, who = await _token_of_app(request, form)
    tokens = request.app.state.ctx.tokens
    if who is not None and who.app_id == app.client_id:
        await tokens.revoke(who)
