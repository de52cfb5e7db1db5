"""``GET /oauth/authorize``: the authorization code flow with PKCE (RFC 6749 section 4.1, RFC 7636 S256 only)
for a patient's own app, the app link's one-time code standing in for a login (CONTRACT.md section 2).

A wrong or unknown ``client_id`` or ``redirect_uri`` (matched exactly against the app's registered URIs) is a
400 with no redirect (RFC 6749 section 4.1.2.1: never redirect to an unverified URI). Every other error
redirects to the app with ``error``, ``error_description`` and ``state``. Parameters the server does not
know are ignored (section 3.1); ``scope`` narrows what the app gets (``launch/patient`` accepted), and
``aud``, when sent (SMART), must name this server. A link code that does not hold counts against the
caller's address like a failed client authentication (service.auth.protocol.guarded).
"""

from __future__ import annotations

import re
from typing import Any

from authlib.common.urls import add_params_to_uri
from fastapi import APIRouter, Request, Response

from service.auth import app_links, grants
from service.auth.discovery_rest import fhir_base
from service.auth.protocol import OAuthError, find_app, guarded
from service.auth.scopes import ScopeError, grant_for_link, parse_scopes
from service.db import tenant_transaction

router = APIRouter(tags=["OAuth"])

CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256, unpadded
MAX_STATE = 1024
QUERY = [
    {"name": name, "in": "query", "required": required, "schema": {"type": "string", **extra}, "description": text_}
    for name, required, extra, text_ in (
        ("response_type", True, {"enum": ["code"]}, "code"),
        ("client_id", True, {}, "A public app's client_id"),
        ("redirect_uri", True, {}, "One of the app's registered redirect URIs, exactly"),
        ("state", True, {"maxLength": MAX_STATE}, "Returned unchanged with the code or the error"),
        ("code_challenge", True, {"pattern": "^[A-Za-z0-9_-]{43}$"}, "BASE64URL(SHA-256(code_verifier))"),
        ("code_challenge_method", True, {"enum": ["S256"]}, "S256 (plain is refused)"),
        ("link_code", True, {}, "The one-time code the practice gave the client (POST /v1/clients/{id}/app-links)"),
        ("scope", False, {}, "Narrows the app's scopes (patient/..., offline_access, launch/patient)"),
        ("aud", False, {}, "When sent: this server's FHIR base URL or its issuer"),
    )
]
RESPONSES: dict[int | str, dict[str, Any]] = {
    302: {"description": "To redirect_uri with code and state, or with error, error_description and state"},
    400: {"description": "Unknown client_id, not a public app, or a redirect_uri it did not register (no redirect)"},
    429: {"description": "Too many failed link codes from this address: a problem with Retry-After"},
}


class _Redirect(OAuthError):
    """An error reported to the app by redirecting to its (verified) redirect URI."""


def _params(request: Request) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    repeated: list[str] = []
    for key, value in request.query_params.multi_items():
        if key in values:
            repeated.append(key)
        values[key] = value
    return values, repeated


async def _client(request: Request, params: dict[str, str], repeated: list[str]) -> tuple[Any, str]:
    """The public app and its verified redirect URI, or a 400 (no redirect)."""
    if {"client_id", "redirect_uri"} & set(repeated):
        raise OAuthError("invalid_request", "client_id and redirect_uri may be sent once only")
    app = await find_app(request, params["client_id"]) if params.get("client_id") else None
    if app is None or not app.public:
        raise OAuthError("invalid_client", "Unknown client_id, or not a public app (apps create --public)")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in app.redirect_uris:
        raise OAuthError("invalid_request", "redirect_uri is missing or is not one the app registered (exact match)")
    return app, redirect_uri


def _check_request(request: Request, app: Any, params: dict[str, str], repeated: list[str]) -> str:
    """The scope the code will carry, or a _Redirect error."""
    if repeated:
        raise _Redirect("invalid_request", f"Parameters sent more than once: {', '.join(sorted(set(repeated)))}")
    if params.get("response_type") != "code":
        raise _Redirect("unsupported_response_type", "response_type must be code")
    if not params.get("state") or len(params["state"]) > MAX_STATE:
        raise _Redirect("invalid_request", f"state is required (at most {MAX_STATE} characters)")
    if params.get("code_challenge_method") != "S256":
        raise _Redirect("invalid_request", "code_challenge_method must be S256 (plain is not supported)")
    if not CHALLENGE.fullmatch(params.get("code_challenge", "")):
        raise _Redirect("invalid_request", "code_challenge must be the 43-character BASE64URL of a SHA-256")
    issuer = request.app.state.ctx.settings.issuer
    if "aud" in params and params["aud"].rstrip("/") not in (fhir_base(issuer), issuer):
        raise _Redirect("invalid_request", f"aud must be this server ({fhir_base(issuer)})")
    try:
        parse_scopes(params.get("scope"))
    except ScopeError as exc:
        raise _Redirect("invalid_scope", str(exc)) from exc
    scope = grant_for_link(params.get("scope"), " ".join(app.scopes))
    if not scope:
        raise _Redirect("invalid_scope", "None of the requested scopes is allowed for this app")
    if not params.get("link_code"):
        raise _Redirect("invalid_request", "link_code is required: the one-time code the practice gave the client")
    return scope


async def _redeem(request: Request, app: Any, params: dict[str, str], scope: str, redirect_uri: str) -> str:
    """Redeem the link code (once) and issue an authorization code for it."""
    link_hash = app_links.link_code_hash(params["link_code"])
    org_id = await grants.secret_org(request, link_hash)
    if org_id == app.org_id:
        async with tenant_transaction(request.app.state.ctx.engine, org_id) as conn:
            code = await app_links.redeem(conn, org_id, link_hash, app.client_id, redirect_uri=redirect_uri,
                                          challenge=params["code_challenge"], scope=scope,
                                          ttl_seconds=grants.CODE_TTL_SECONDS)
        if code is not None:
            return code
    raise _Redirect("access_denied", "The link code is not valid: unknown, expired, already used, revoked, or for "
                    "another app", failed_attempt=True)


def _redirect(uri: str, values: dict[str, str | None]) -> Response:
    location = add_params_to_uri(uri, [(k, v) for k, v in values.items() if v is not None])
    return Response(status_code=302, headers={"Location": location, "Cache-Control": "no-store", "Pragma": "no-cache"})


@router.get("/oauth/authorize", operation_id="authorize", response_class=Response, status_code=302,
            summary="Authorization code with PKCE for a patient's own app; the app link's code stands in for a login",
            openapi_extra={"parameters": QUERY}, responses=RESPONSES)
async def authorize(request: Request) -> Response:
    params, repeated = _params(request)
    try:
        app, redirect_uri = await _client(request, params, repeated)
    except OAuthError as err:
        return err.response()
    state = params.get("state") if "state" not in repeated and len(params.get("state", "")) <= MAX_STATE else None
    try:
        scope = _check_request(request, app, params, repeated)
        code = await guarded(request, app.client_id, lambda: _redeem(request, app, params, scope, redirect_uri))
    except _Redirect as err:
        return _redirect(redirect_uri, {"error": err.error, "error_description": err.description, "state": state})
    return _redirect(redirect_uri, {"code": code, "state": state})
