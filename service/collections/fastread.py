"""The hottest read, ``GET /v1/<collection>/<id>[?include=...]``, dispatched without FastAPI's router and
dependency solver, through the very functions the FastAPI route calls.

For a read that costs PostgreSQL a tenth of a millisecond, FastAPI spent about half a millisecond of CPU
walking the route table, solving the route's dependency tree (bearer token, principal, the Security scope, the
unit-of-work generator, ``include``) with its generic machinery and wrapping the endpoint in exit stacks, and
SQLAlchemy another few tenths running BEGIN, the tenant statement and COMMIT through its transaction layer.
This ASGI layer sits just above the router, below every middleware (metrics, request id and audit trail,
security headers, method and body checks), and for exactly that shape of request takes the same steps in the
same order with the same functions:

1. the bearer token and the principal (``authenticate``: verification cache, rate limit), else 401;
2. the route's declared scope (``authorize``), else 403;
3. the unit of work (``uow.read_in_one``): for a token the revocation listener knows is good, a pinned connection
   (``uow.pinned_read``: no transaction, the statement checks the session's tenant, and under load carries the other
   reads of the same tenant and shape that wait with it, ``db.PinnedTenants.coalesced``); otherwise
   ``driver_unit_of_work`` (``BEGIN;``, the tenant ``set_config`` with the revocation check, ``COMMIT;``); either
   way the request's audit rows are written by the read's own statement and committed with it, before the response
   is sent;
4. the route's own ``?include=`` dependency (422 for unknown names) and the route's own endpoint function
   (``jsonread.read``: child scope checks, then the record and its child lists as JSON PostgreSQL writes, in one
   statement; ETag).

Domain errors are answered by the app's own renderer (``problems.domain_problem``); anything else propagates
as it would from the route. Every other request (another method, an id that is not a canonical UUID, any query
parameter but one ``include``, an ``include`` longer than the route accepts) goes to FastAPI unchanged, whose
validation answers it as before. The FastAPI route stays registered: it is the documented one (OpenAPI).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import Request, Response
from fastapi.security import SecurityScopes

from service.api.dependencies import authenticate, authorize, bearer, bearer_token
from service.api.problems import domain_problem
from service.api.uow import read_in_one
from service.auth.principal import Principal
from service.collections.registry import Collection
from service.errors import DomainError

_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class FastRead:
    """What the collection router declares for its read route, so that this path calls the same pieces.

    ``unit_of_work`` is the route's own unit-of-work dependency; this path runs its driver twin
    (``uow.driver_unit_of_work``: the same transaction, tenant and revocation check on the asyncpg connection, the
    audit row committed before the response), or for a token known not revoked ``uow.pinned_read`` (the same
    tenant, checked by the read's one statement, and the same audit row). ``check`` (run by ``ReadFastPath`` when
    the app is built) proves that the route's dependencies are exactly the ones declared here, and its endpoint the
    declared one: a dependency added to the route and not to this path stops the app from starting.
    """

    coll: Collection
    route: Any  # the APIRoute: put in scope["route"] as FastAPI does (metrics label by it)
    scopes: SecurityScopes  # the route's Security scopes
    include: Callable[[str | None], Awaitable[list[str]]]  # the check of an ?include= value (what the route runs)
    include_query: Callable[..., Awaitable[list[str]]]  # the route's dependency: its query model, then that check
    include_max_length: int  # its Query(max_length=...): longer values go to FastAPI for its 422
    endpoint: Callable[..., Awaitable[Response]]  # the route's endpoint: (record_id, who, db, include)
    unit_of_work: Callable[..., Any]  # the route's unit-of-work dependency

    def dependencies(self) -> set[Any]:
        """What this path calls in the route's place, as FastAPI would name them."""
        return {bearer, authenticate, authorize, self.unit_of_work, self.include_query}

    def check(self) -> None:
        found: set[Any] = set()
        stack = list(self.route.dependant.dependencies)
        while stack:
            dep = stack.pop()
            found.add(dep.call)
            stack.extend(dep.dependencies)
        declared = self.dependencies()
        if found != declared:
            raise AssertionError(f"the fast read of /v1/{self.coll.name} does not run its route's dependencies: "
                                 f"route only {found - declared}, fast path only {declared - found}")
        if getattr(self.route.endpoint, "__wrapped__", self.route.endpoint) is not self.endpoint:
            raise AssertionError(f"the fast read of /v1/{self.coll.name} does not run its route's endpoint")
        scoped = [d for d in self.route.dependant.dependencies if d.call is authorize]
        if [list(d.own_oauth_scopes or []) for d in scoped] != [self.scopes.scopes]:
            raise AssertionError(f"the fast read of /v1/{self.coll.name} does not check its route's scopes")


class ReadFastPath:
    """Pure ASGI: serves the declared read routes directly; passes everything else on."""

    def __init__(self, app: Any, reads: Iterable[FastRead]) -> None:
        self.app = app
        self.reads = {f"/v1/{read.coll.name}": read for read in reads}
        for read in self.reads.values():
            read.check()  # at startup: the fast path runs exactly its route's dependencies

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            prefix, _, tail = scope["path"].rpartition("/")
            read = self.reads.get(prefix)
            if read is not None and _CANONICAL_UUID.match(tail):
                include = _include_value(scope.get("query_string", b""), read.include_max_length)
                if include is not _OTHER:
                    await self._read(read, UUID(tail), include, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _read(self, read: FastRead, record_id: UUID, include: str | None, scope: dict[str, Any],
                    receive: Any, send: Any) -> None:
        scope["route"] = read.route
        scope["endpoint"] = read.route.endpoint
        request = Request(scope, receive)
        try:
            response = await _serve(read, record_id, include, request)
        except DomainError as exc:
            response = domain_problem(exc)
        await response(scope, receive, send)


async def _serve(read: FastRead, record_id: UUID, include: str | None, request: Request) -> Response:
    who: Principal = await authenticate(request, bearer_token(request.headers.get("authorization")))
    await authorize(read.scopes, who)
    ctx = request.app.state.ctx

    async def body(db: Any) -> Response:
        names = await read.include(include)
        return await read.endpoint(record_id=record_id, who=who, db=db, include=names)

    return await read_in_one(ctx.engine, ctx.pinned, who, ctx.tokens.revocations, body)


_OTHER = object()


def _include_value(query_string: bytes, max_length: int) -> Any:
    """The ``include`` value (None without a query), or ``_OTHER`` for any query this path leaves to FastAPI."""
    if not query_string:
        return None
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)  # as Starlette's QueryParams
    if len(pairs) != 1 or pairs[0][0] != "include" or len(pairs[0][1]) > max_length:
        return _OTHER
    return pairs[0][1]
