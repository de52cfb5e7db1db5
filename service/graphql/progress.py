"""Progress in GraphQL: resolvers over the progress service, so the numbers are REST's (the same functions)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from service.graphql.fields import _ctx, field
from service.graphql.typegen import Types
from service.progress.caseload import DEFAULT_SORT
from service.progress.schemas import CaseloadSummary, ClientProgress
from service.progress.service import DEFAULT_LIMIT, caseload_summary, client_progress


def client_progress_field(types: Types) -> Any:
    async def resolve(root: Any, info: Any) -> Any:
        ctx = _ctx(info)
        ctx.require("Progress", "r")
        async with ctx.transaction() as conn:
            return await client_progress(conn, ctx.who, root.id)

    return field(resolve, types.nested_object(ClientProgress) | None, [],
                 description="Per goal: milestones, strengths, markers with reliable change, target_met, stale, "
                             "off_track; client measures and recovery; safety first (one statement per client: "
                             "select it for one client, not across a page)")


def progress_summary_field(types: Types) -> Any:
    async def resolve(info: Any, client_ids: list[UUID] | None, since: datetime | None, until: datetime | None,
                      sort: str, safety_priority: bool | None, off_track: bool | None, stale: bool | None,
                      limit: int, cursor: str | None) -> Any:
        ctx = _ctx(info)
        ctx.require("Progress", "s")
        async with ctx.transaction() as conn:
            return await caseload_summary(conn, ctx.who, client_ids=client_ids, since=since, until=until, sort=sort,
                                          safety_priority=safety_priority, off_track=off_track, stale=stale,
                                          limit=limit, cursor=cursor)

    return field(resolve, types.nested_object(CaseloadSummary), [
        ("client_ids", list[UUID] | None, None), ("since", datetime | None, None), ("until", datetime | None, None),
        ("sort", str, DEFAULT_SORT), ("safety_priority", bool | None, None), ("off_track", bool | None, None),
        ("stale", bool | None, None), ("limit", int, DEFAULT_LIMIT), ("cursor", str | None, None),
    ], root=False, description="The caseload of the token's organization (or the listed clients): counts and a "
                               "page of client rows (`limit` rows after `cursor`, a `nextCursor`), as REST's "
                               "GET /v1/progress/summary, in one statement")
