"""``GET /v1/changes``: the change feed over HTTP (the feed itself: ``service.sync.changes``)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from service.api import cursors
from service.api.dependencies import needs, problems
from service.api.http import NO_STORE, QueryParams, StrictRoute, dumps
from service.api.uow import read_in_one
from service.auth.principal import Principal
from service.collections.registry import REGISTRY
from service.collections.types import Out
from service.sync import changes

router = APIRouter(prefix="/v1", tags=["Sync"], route_class=StrictRoute)


class ChangeOut(Out):
    type: str
    id: UUID
    action: str
    version: int
    changed_at: Any


class ChangePage(Out):
    data: list[ChangeOut]
    next_cursor: str
    has_more: bool


def types_field(description: str) -> Any:
    """``types``: comma-separated change-feed type names, declared as exactly that (a query model's field)."""
    names = "|".join(sorted(c.type_name for c in REGISTRY.values()))
    return Field(None, max_length=500, description=description,
                 json_schema_extra={"pattern": f"^(({names})(,({names}))*)?$"})


Reader = Annotated[Principal, needs("*", "s")]


class ChangesQuery(QueryParams):
    since: str | None = cursors.CHANGES.field("next_cursor of the previous page")
    types: str | None = types_field("Comma-separated types, e.g. strength,goal")
    limit: int = Field(500, ge=1, le=1000)


@router.get("/changes", response_model=ChangePage, operation_id="list_changes",
            summary="Every committed change since a cursor, exactly once",
            responses=problems(400, 401, 403, 422))
async def list_changes(who: Reader, request: Request, query: Annotated[ChangesQuery, Query()]) -> Response:
    chosen = changes.readable_types(who, query.types)
    ctx = request.app.state.ctx
    data, cursor, more = await read_in_one(  # one statement: alone on a pinned connection when it may be
        ctx.engine, ctx.pinned, who, ctx.tokens.revocations,
        lambda db: changes.page(db, who, chosen, query.since, query.limit))
    body = b'{"data":%s,"next_cursor":%s,"has_more":%s}' % (data.encode(), dumps(cursor), b"true" if more else b"false")
    return Response(body, media_type="application/json", headers=NO_STORE)
