"""Discovery: RFC 8414 authorization server metadata, SMART App Launch 2 configuration, and the JWKS."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service.api.http import JSONOut
from service.auth.assertions import ASSERTION_ALGS
from service.auth.scopes import CONTEXT_SCOPES, FHIR_ALIASES, resources

router = APIRouter(tags=["OAuth"])

GRANT_TYPES = ["client_credentials", "authorization_code", "refresh_token"]
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
# "none": a public app (a patient's own app) names itself with client_id and proves possession with PKCE.
TOKEN_AUTH_METHODS = [*AUTH_METHODS, "none"]
SMART_CAPABILITIES = [
    "launch-standalone", "client-public", "client-confidential-asymmetric", "client-confidential-symmetric",
    "context-standalone-patient", "permission-offline", "permission-patient", "permission-v2", "permission-v1",
]


def scopes_supported() -> list[str]:
    """Every resource scope in system/ and patient/ context (ours and the FHIR aliases), and the context scopes."""
    known = resources()
    names = ("*", *known, *(a for a in FHIR_ALIASES if a not in known))
    scopes = [f"{ctx}/{res}.{perm}" for ctx in ("system", "patient") for res in names for perm in ("cruds", "rs")]
    return [*scopes, *CONTEXT_SCOPES]


def token_endpoint_url(base: str) -> str:
    return f"{base}/oauth/token"


def fhir_base(base: str) -> str:
    return f"{base}/fhir/R4"


def metadata(base: str) -> dict[str, Any]:
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": token_endpoint_url(base),
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "scopes_supported": scopes_supported(),
    }


@router.get("/.well-known/oauth-authorization-server", operation_id="oauth_metadata",
            summary="RFC 8414 authorization server metadata")
async def authorization_server_metadata(request: Request) -> JSONOut:
    return JSONOut(metadata(request.app.state.ctx.settings.issuer))


@router.get("/.well-known/jwks.json", operation_id="jwks", summary="Public keys that verify access tokens")
async def jwks(request: Request) -> JSONOut:
    return JSONOut(request.app.state.ctx.keys.public_jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.get("/fhir/R4/.well-known/smart-configuration", operation_id="smart_configuration",
            summary="SMART App Launch 2 configuration")
async def smart_configuration(request: Request) -> JSONOut:
    meta = metadata(request.app.state.ctx.settings.issuer)
    keep = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "introspection_endpoint",
            "revocation_endpoint", "grant_types_supported", "response_types_supported",
            "code_challenge_methods_supported", "token_endpoint_auth_methods_supported",
            "token_endpoint_auth_signing_alg_values_supported", "scopes_supported")
    return JSONOut({**{k: meta[k] for k in keep}, "capabilities": SMART_CAPABILITIES})
