"""FastAPI dependencies: the bearer token, the principal, and each route's one scope declaration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2, SecurityScopes
from starlette.requests import HTTPConnection

from service.auth.principal import Principal
from service.auth.scopes import FHIR_ALIASES, RESOURCES, parse_scope, required_scope
from service.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from service.auth.tokens import TokenService

PERM_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


class BearerToken(OAuth2):
    """OAuth 2.0 client-credentials bearer tokens; declared in OpenAPI with every scope we know."""

    def __init__(self) -> None:
        scopes = {
            required_scope(res, p): f"{PERM_WORDS[p]} {res}" for res in RESOURCES for p in "cruds"
        } | {required_scope(res, "cu"): f"upsert {res} by identifier" for res in RESOURCES} | {
            required_scope("*", p): f"{PERM_WORDS[p]} any resource the token may" for p in "cs"
        }
        # FHIR resource names, aliases of ours, as the FHIR facade declares them (CONTRACT.md section 2).
        scopes.update({
            required_scope(alias, p): f"{PERM_WORDS[p]} {alias} (FHIR alias of {', '.join(ours)})"
            for alias, ours in FHIR_ALIASES.items() if alias not in RESOURCES for p in "cruds"
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
    principal = await tokens.verify(token, check_revocation=not _checks_revocation(request))
    request.state.principal = principal
    limiter = getattr(request.app.state.ctx, "limiter", None)
    if limiter is not None:  # per-app quota; the RateLimit fields go on the response (service.middleware)
        request.state.ratelimit = await limiter.enforce(principal.org_id, principal.app_id)
    return principal


_ROUTE_CHECKS: dict[int, bool] = {}


def _checks_revocation(request: Request) -> bool:
    """Whether the route's own unit of work checks revocation in its first statement (then we need not)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return False
    key = id(route)
    if key not in _ROUTE_CHECKS:
        stack, found = [dependant], False
        while stack and not found:
            dep = stack.pop()
            found = bool(getattr(dep.call, "checks_revocation", False))
            stack.extend(dep.dependencies)
        _ROUTE_CHECKS[key] = found
    return _ROUTE_CHECKS[key]


async def authorize(security_scopes: SecurityScopes, who: Annotated[Principal, Depends(authenticate)]) -> Principal:
    for declared in security_scopes.scopes:
        scope = parse_scope(declared)
        assert scope is not None
        for perm in scope.perms:
            if not who.allows(scope.name, perm):
                raise Forbidden(required_scope(scope.name, "".join(sorted(scope.perms, key="cruds".index)),
                                               who.context))
    return who


async def authorize_any(
    security_scopes: SecurityScopes, who: Annotated[Principal, Depends(authenticate)]
) -> Principal:
    """For operations spanning resources (change feed, bulk): the permission on at least one resource;
    each record is then checked against the token's scopes one by one."""
    for declared in security_scopes.scopes:
        scope = parse_scope(declared)
        assert scope is not None
        for perm in scope.perms:
            if not any(who.allows(resource, perm) for resource in RESOURCES):
                raise Forbidden(required_scope("*", perm, who.context))
    return who


def needs_any(perm: str) -> Any:
    """Declares ``system/*.<perm>`` in OpenAPI; satisfied by ``perm`` on any one resource."""
    return Security(authorize_any, scopes=[required_scope("*", perm)])


def needs(resource: str, perm: str) -> Any:
    """The one way a route declares the scope it needs (shown in OpenAPI, checked at request time)."""
    return Security(authorize, scopes=[required_scope(resource, perm)])


Authenticated = Annotated[Principal, Depends(authenticate)]
