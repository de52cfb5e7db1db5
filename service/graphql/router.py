"""/graphql: bearer token required (HTTP 401 otherwise), batching off, POST only (GET is the IDE)."""

from typing import Any

from fastapi import Request, Response
from strawberry.fastapi import GraphQLRouter

from service.api.dependencies import authenticate, bearer
from service.api.http import dumps, loads_strict
from service.errors import Unauthenticated
from service.graphql.context import GraphQLContext
from service.graphql.ide import ide_router
from service.graphql.schema import build_schema


class GraphQLUnauthenticated(Unauthenticated):
    """HTTP 401 (with WWW-Authenticate) whose problem+json body also reads as a GraphQL error response."""

    def __init__(self, cause: Unauthenticated) -> None:
        super().__init__(cause.detail)
        self.headers = cause.headers
        self.reason = "invalid_token" if "invalid_token" in cause.headers.get("WWW-Authenticate", "") else \
            "missing_token"

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body = super().problem(instance)
        body["errors"] = [{"message": self.detail, "extensions": {"code": "UNAUTHENTICATED", "reason": self.reason}}]
        return body


async def get_context(request: Request, response: Response) -> GraphQLContext:
    try:
        who = await authenticate(request, await bearer(request))
    except Unauthenticated as exc:
        raise GraphQLUnauthenticated(exc) from exc
    response.headers["Cache-Control"] = "no-store"
    return GraphQLContext(who, request.app.state.ctx)


class StrictGraphQLRouter(GraphQLRouter[GraphQLContext, None]):
    """The body is read by the same strict JSON parser as REST bodies (duplicate keys, NaN, bad UTF-8, depth):
    its refusals are the same 4xx problems. Responses are written with orjson."""

    def decode_json(self, data: str | bytes) -> object:
        return loads_strict(data.encode() if isinstance(data, str) else data)

    def encode_json(self, data: object) -> str | bytes:
        """orjson, as REST responses; what it cannot encode (an integer beyond 64 bits in a JSON scalar) is
        left to the standard encoder, as before."""
        try:
            return dumps(data)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return super().encode_json(data)


def graphql_router() -> GraphQLRouter[GraphQLContext, None]:
    """POST /graphql for GraphQL; GET /graphql serves GraphiQL (its assets from the service, not a CDN)."""
    router: GraphQLRouter[GraphQLContext, None] = StrictGraphQLRouter(
        build_schema(), graphql_ide=None, allow_queries_via_get=False, context_getter=get_context,
    )
    router.routes[0:0] = ide_router().routes  # first, so GET /graphql is the IDE rather than a GET query
    return router
