"""The authorization server: token endpoint (client credentials), JWKS and RFC 8414 discovery."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Request
from sqlalchemy import text

from service.auth.apps import secret_matches
from service.auth.scopes import RESOURCES, ScopeError, grant, parse_scopes
from service.http import JSONOut

router = APIRouter(tags=["OAuth"])

TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
GRANT_TYPES = ["client_credentials"]
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.error, self.description, self.status, self.headers = error, description, status, headers or {}

    def response(self) -> JSONOut:
        return JSONOut({"error": self.error, "error_description": self.description}, status_code=self.status,
                       headers={**TOKEN_HEADERS, **self.headers})


def scopes_supported() -> list[str]:
    return [f"{ctx}/{res}.{perm}" for ctx in ("system", "patient") for res in ("*", *RESOURCES)
            for perm in ("cruds", "rs")]


def metadata(base: str) -> dict[str, Any]:
    return {
        "issuer": base,
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
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


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str, str]:
    """(client_id, client_secret, method) from the Basic header or the form, never both."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError("invalid_client", "Use HTTP Basic or form credentials", 401,
                             {"WWW-Authenticate": 'Basic realm="token"'})
        if "client_secret" in form:
            raise OAuthError("invalid_request", "Send the client credentials one way only")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
            cid, sep, secret = decoded.partition(":")
            if not sep:
                raise ValueError
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise OAuthError("invalid_client", "Malformed Basic credentials", 401,
                             {"WWW-Authenticate": 'Basic realm="token"'}) from exc
        return unquote(cid), unquote(secret), "client_secret_basic"
    if "client_id" in form and "client_secret" in form:
        return form["client_id"], form["client_secret"], "client_secret_post"
    raise OAuthError("invalid_client", "Client authentication is required", 401,
                     {"WWW-Authenticate": 'Basic realm="token"'})


TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": GRANT_TYPES},
                        "scope": {"type": "string"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    },
}


@router.post("/oauth/token", operation_id="token", summary="Issue an access token (client credentials)",
             openapi_extra=TOKEN_FORM, responses={400: {"description": "OAuth error"},
                                                  401: {"description": "Client authentication failed"}})
async def token(request: Request) -> JSONOut:
    try:
        return await _token(request)
    except OAuthError as err:
        return err.response()


async def _token(request: Request) -> JSONOut:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Send the token request as application/x-www-form-urlencoded")
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
    if form.get("grant_type") not in GRANT_TYPES:
        raise OAuthError("unsupported_grant_type", "Only client_credentials is supported")
    client_id, secret, _method = _client_credentials(request, form)
    ctx = request.app.state.ctx
    async with ctx.engine.connect() as conn:
        app = (await conn.execute(text("SELECT * FROM auth_app(:cid)"), {"cid": client_id})).first()
    if app is None or app.disabled_at is not None or not secret_matches(secret, app.secret_hash):
        raise OAuthError("invalid_client", "Unknown client or wrong secret", 401,
                         {"WWW-Authenticate": 'Basic realm="token"'})
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
