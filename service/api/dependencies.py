"""FastAPI dependencies every router shares: the bearer token, the principal, each route's one scope declaration,
the unit of work (``Db``), the Idempotency-Key header, ETags and the problem responses OpenAPI shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2, SecurityScopes
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import HTTPConnection

from service.api.idempotency import KEY_REGEX
from service.api.uow import unit_of_work as work
from service.api.uow import write_unit_of_work
from service.auth.principal import Principal
from service.auth.scopes import FHIR_ALIASES, require, required_scope, resources
from service.errors import Unauthenticated

if TYPE_CHECKING:
    from service.auth.tokens import TokenService

PERM_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


class BearerToken(OAuth2):
    """OAuth 2.0 client-credentials bearer tokens; declared in OpenAPI with every scope we know."""

    def __init__(self) -> None:
        scopes = {
            required_scope(res, p): f"{PERM_WORDS[p]} {res}" for res in resources() for p in "cruds"
        } | {required_scope(res, "cu"): f"upsert {res} by identifier" for res in resources()} | {
            required_scope("*", p): f"{PERM_WORDS[p]} any resource the token may" for p in "cs"
        }
        # FHIR resource names, aliases of ours, as the FHIR facade declares them (CONTRACT.md section 2).
        scopes.update({
            required_scope(alias, p): f"{PERM_WORDS[p]} {alias} (FHIR alias of {', '.join(ours)})"
            for alias, ours in FHIR_ALIASES.items() if alias not in resources() for p in "cruds"
        })
        flows = OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl="/oauth/token", scopes=scopes))
        super().__init__(flows=flows, scheme_name="OAuth2", auto_error=False,
                         description="SMART v2 scopes (system/, user/ or patient/ context; v1 aliases accepted)")

    async def __call__(self, request: HTTPConnection) -> str | None:
        return bearer_token(request.headers.get("authorization"))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None without the header; 401 for another scheme."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("The Authorization header must carry a Bearer token")
    return token.strip()


bearer = BearerToken()


async def authenticate(request: Request, token: Annotated[str | None, Depends(bearer)]) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    if token is None:
        raise Unauthenticated("A bearer token is required", error=None)
    tokens: TokenService = request.app.state.ctx.tokens
    principal = await tokens.verify(token)
    request.state.principal = principal
    limiter = getattr(request.app.state.ctx, "limiter", None)
    if limiter is not None:  # per-app quota; the RateLimit fields go on the response (service.api.middleware)
        request.state.ratelimit = await limiter.enforce(principal.org_id, principal.app_id)
    return principal


async def authorize(security_scopes: SecurityScopes, who: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """The route's declared scopes, checked by ``scopes.require``."""
    for declared in security_scopes.scopes:
        resource, _, perms = declared.partition("/")[2].rpartition(".")
        require(who, resource, perms)
    return who


def needs(resource: str, perm: str) -> Any:
    """The one way a route declares the scope it needs (shown in OpenAPI, checked at request time): ``resource``
    is ours, a FHIR alias (met by any resource it stands for) or ``*`` (met by any one resource; for operations
    spanning resources, the change feed and bulk, whose records are then checked one by one)."""
    return Security(authorize, scopes=[required_scope(resource, perm)])


Authenticated = Annotated[Principal, Depends(authenticate)]


async def unit_of_work(
    request: Request, who: Annotated[Principal, Depends(authenticate)]
) -> AsyncIterator[AsyncConnection]:
    """One transaction per request, bound to the caller's organization (and patient), committed
    before the response is sent."""
    ctx = request.app.state.ctx
    async with work(ctx.engine, who, ctx.tokens.revocations) as conn:
        yield conn  # the request's audit row commits with its writes


Db = Annotated[AsyncConnection, Depends(unit_of_work, scope="function")]


async def write_work(
    request: Request, who: Annotated[Principal, Depends(authenticate)]
) -> AsyncIterator[AsyncConnection]:
    """``unit_of_work`` in fewer round trips (``uow.write_unit_of_work``), for a write that opens no savepoint."""
    ctx = request.app.state.ctx
    async with write_unit_of_work(ctx.engine, who, ctx.tokens.revocations) as conn:
        yield conn  # the request's audit row commits with its writes, in the COMMIT's round trip


WriteDb = Annotated[AsyncConnection, Depends(write_work, scope="function")]

PROBLEM = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "Malformed request", 401: "Missing or invalid token", 403: "Token lacks the scope",
        404: "Not found (also: another organization's record)", 405: "Method not allowed",
        409: "Conflict", 410: "Deleted", 412: "If-Match is stale", 413: "Body too large",
        415: "Body is not JSON", 422: "Validation failed",
    }
    return {c: {"description": texts[c], **PROBLEM} for c in codes}


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Replays the first response for 24 h (same key, same body)",
           json_schema_extra={"pattern": f"^{KEY_REGEX}$"}),
]


def etag(version: int) -> str:
    return f'W/"{version}"'
