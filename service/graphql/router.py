"""/graphql: bearer token required (HTTP 401 otherwise), batching off, POST only (GET is the IDE)."""

from typing import Annotated

from fastapi import Depends, Request, Response
from strawberry.fastapi import GraphQLRouter

from service.auth.principal import Principal
from service.auth.rest import authenticate
from service.graphql.context import GraphQLContext
from service.graphql.ide import ide_router
from service.graphql.schema import build_schema


async def get_context(
    request: Request, response: Response, who: Annotated[Principal, Depends(authenticate)]
) -> GraphQLContext:
    response.headers["Cache-Control"] = "no-store"
    return GraphQLContext(who, request.app.state.ctx)


def graphql_router() -> GraphQLRouter[GraphQLContext, None]:
    """POST /graphql for GraphQL; GET /graphql serves GraphiQL (its assets from the service, not a CDN)."""
    router: GraphQLRouter[GraphQLContext, None] = GraphQLRouter(
        build_schema(), graphql_ide=None, allow_queries_via_get=False, context_getter=get_context,
    )
    router.routes[0:0] = ide_router().routes  # first, so GET /graphql is the IDE rather than a GET query
    return router
