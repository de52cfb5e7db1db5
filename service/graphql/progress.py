"""Progress in GraphQL: the same service functions and the same numbers as REST's progress routes."""

from datetime import datetime
from typing import Any
from uuid import UUID

from service.graphql.context import read_field
from service.graphql.fields import _ctx, field
from service.graphql.typegen import Types
from service.progress.schemas import CaseloadSummary, ClientProgress
from service.progress.service import DEFAULT_OFF_TRACK_DAYS, DEFAULT_STALE_DAYS, caseload_summary, client_progress


def client_progress_field(types: Types) -> Any:
    async def resolve(root: Any, info: Any, off_track_days: int) -> Any:
        ctx = _ctx(info)
        ctx.require("Progress", "r")
        async with ctx.reading() as conn:
            return await client_progress(conn, ctx.who, read_field(root, "id"), off_track_days=off_track_days)

    return field(resolve, types.nested_object(ClientProgress) | None, [("off_track_days", int, DEFAULT_OFF_TRACK_DAYS)],
                 description="Per goal: milestones, strengths, markers with reliable change; safety first "
                             "(one statement per client: select it for one client, not across a page)")


def progress_summary_field(types: Types) -> Any:
    async def resolve(info: Any, client_ids: list[UUID] | None, since: datetime | None, until: datetime | None,
                      stale_days: int, off_track_days: int) -> Any:
        ctx = _ctx(info)
        ctx.require("Progress", "s")
        async with ctx.reading() as conn:
            return await caseload_summary(conn, ctx.who, client_ids=client_ids, since=since, until=until,
                                          stale_days=stale_days, off_track_days=off_track_days)

    return field(resolve, types.nested_object(CaseloadSummary), [
        ("client_ids", list[UUID] | None, None), ("since", datetime | None, None), ("until", datetime | None, None),
        ("stale_days", int, DEFAULT_STALE_DAYS), ("off_track_days", int, DEFAULT_OFF_TRACK_DAYS),
    ], root=False, description="The caseload of the token's organization (or the listed clients), in one statement")
