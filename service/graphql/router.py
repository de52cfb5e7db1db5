"""/graphql: bearer token required (HTTP 401 otherwise), batching off, mutations never via GET."""

from typing import Annotated

from fastapi import Depends, Request, Response
from strawberry.fastapi import GraphQLRouter

from service.auth.principal import Principal
from service.auth.rest import authenticate
from service.graphql.context import GraphQLContext
from service.graphql.schema import build_schema


async def get_context(
    request: Request, response: Response, who: Annotated[Principal, Depends(authenticate)]
) -> GraphQLContext:
    response.headers["Cache-Control"] = "no-store"
    return GraphQLContext(who, request.app.state.ctx)


def graphql_router() -> GraphQLRouter[GraphQLContext, None]:
    # GraphiQL is off: Strawberry's page loads React and GraphiQL from a CDN, which hospital networks block.
    return GraphQLRouter(build_schema(), graphql_ide=None, allow_queries_via_get=True, context_getter=get_context)
