"""/graphql: bearer token required (HTTP 401 otherwise), batching off, POST only (GET is the IDE).

``GraphQLFastPath`` serves ``POST /graphql`` without FastAPI's router and dependency solver, through the very pieces
the FastAPI route runs: the context getter (``get_context``: the bearer token, the principal, ``Cache-Control``), what
Strawberry's FastAPI integration adds to the context (the request, the sub-response, the background tasks), and the
router's own ``run`` (body parsing, operation checks, execution, the response). For a dashboard that costs
PostgreSQL two milliseconds, FastAPI spent about a tenth of the service's CPU on the route: matching, solving five
dependencies with its generic machinery and wrapping the endpoint. A request with a query string, any other method
or path goes to FastAPI unchanged; the route stays registered, and ``GraphQLFastPath.check`` stops the app from
starting if the route's dependencies are not exactly the ones this path runs.
"""

from typing import Any

from cross_web import HTTPException
from fastapi import BackgroundTasks, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from strawberry.fastapi import GraphQLRouter

from service.api.dependencies import authenticate, bearer
from service.api.http import dumps, loads_strict
from service.api.problems import domain_problem
from service.errors import DomainError, Unauthenticated
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


async def no_root_value() -> Any:
    """The operations' root value: none (the resolvers read the context)."""
    return None


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

    async def get_sub_response(self, request: Request) -> Response:
        """The request's own sub-response when ``GraphQLFastPath`` served it; else the one FastAPI solved."""
        own: Response | None = request.scope.get(_SUB_RESPONSE)
        return own if own is not None else await super().get_sub_response(request)

    def decode_json(self, data: str | bytes) -> object:
        return loads_strict(data.encode() if isinstance(data, str) else data)

    def encode_json(self, data: object) -> str | bytes:
        """orjson, as REST responses; what it cannot encode (an integer beyond 64 bits in a JSON scalar) is
        left to the standard encoder, as before."""
        try:
            return dumps(data)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return super().encode_json(data)


PATH = "/graphql"


def graphql_router() -> GraphQLRouter[GraphQLContext, None]:
    """POST /graphql for GraphQL; GET /graphql serves GraphiQL (its assets from the service, not a CDN). The routes
    carry their full path (not a prefix given when the app includes them), which is what metrics label them by."""
    router: GraphQLRouter[GraphQLContext, None] = StrictGraphQLRouter(
        build_schema(), path=PATH, graphql_ide=None, allow_queries_via_get=False, context_getter=get_context,
        root_value_getter=no_root_value,  # type: ignore[arg-type]  # FastAPI awaits it; the stub names sync only
    )
    router.routes[0:0] = ide_router(PATH).routes  # first, so GET /graphql is the IDE rather than a GET query
    return router


_SUB_RESPONSE = "strengths.graphql.sub_response"  # the ASGI scope key of GraphQLFastPath's sub-response


class GraphQLFastPath:
    """Pure ASGI: serves ``POST /graphql`` (no query string) directly; passes everything else on."""

    def __init__(self, app: Any, router: GraphQLRouter[GraphQLContext, None]) -> None:
        self.app = app
        self.router = router
        # put in scope["route"] as FastAPI puts it (metrics label by it)
        self.route = next(r for r in router.routes if isinstance(r, APIRoute) and "POST" in (r.methods or ()))
        self.path = self.route.path
        self.check()

    def check(self) -> None:
        """At startup: the route's dependencies are the context getter (ours, inside Strawberry's, which asks for
        the connection, the background tasks and the sub-response) and ``no_root_value``, nothing else."""
        calls = [d.call for d in self.route.dependant.dependencies]
        if calls != [self.router.context_getter, no_root_value]:
            raise AssertionError(f"POST {self.path} has dependencies GraphQLFastPath does not run: {calls}")
        inner = {d.call for d in self.route.dependant.dependencies[0].dependencies}
        if inner != {get_context}:
            raise AssertionError(f"POST {self.path} gets its context from {inner}, not get_context")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self.path
                and not scope.get("query_string")):
            scope["route"] = self.route
            scope["endpoint"] = self.route.endpoint
            request = Request(scope, receive, send)
            try:
                response = await self._serve(request)
            except DomainError as exc:
                response = domain_problem(exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _serve(self, request: Request) -> Response:
        sub = Response()  # the sub-response as FastAPI makes it: no length, no status of its own
        del sub.headers["content-length"]
        sub.status_code = None  # type: ignore[assignment]
        context = await get_context(request, sub)
        tasks = BackgroundTasks()
        context.request, context.response, context.background_tasks = request, sub, tasks  # Strawberry's merge
        request.scope[_SUB_RESPONSE] = sub
        try:
            response = await self.router.run(request=request, context=context, root_value=await no_root_value())
        except HTTPException as e:  # as the route answers it
            response = PlainTextResponse(e.reason, status_code=e.status_code)
        if response.background is None:
            response.background = tasks
        return response
