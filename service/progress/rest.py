"""REST routes for progress: each declares its scope with needs("Progress", ...).

(No ``from __future__ import annotations`` here: FastAPI must see the real parameter types.)
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from service.api.dependencies import Db, needs, problems
from service.api.http import NO_STORE, JSONOut, StrictRoute
from service.auth.principal import Principal
from service.collections.types import Day, Timestamp
from service.progress import caseload, chart, summary
from service.progress import service as progress
from service.progress.schemas import CaseloadSummary, ClientProgress, ClinicalSummary

router = APIRouter(tags=["Progress"], route_class=StrictRoute)
Reader = Annotated[Principal, needs("Progress", "r")]
Searcher = Annotated[Principal, needs("Progress", "s")]
SORT_HELP = ("Comma-separated row fields (" + ", ".join(caseload.SORT_NAMES) + "), `-` for descending; default "
             f"`{caseload.DEFAULT_SORT}`. Absent readings and due dates sort last; never measured counts as "
             "measured longest ago")


@router.get(
    "/v1/clients/{client_id}/progress", response_model=ClientProgress, operation_id="read_client_progress",
    summary="A client's progress per goal, client measures and recovery", responses=problems(401, 403, 404, 410, 422),
)
async def read_progress(client_id: UUID, who: Reader, db: Db) -> Response:
    result = await progress.client_progress(db, who, client_id)
    return JSONOut(result.model_dump(mode="json"), headers=NO_STORE)


@router.get(
    "/v1/progress/summary", response_model=CaseloadSummary, operation_id="read_caseload_summary",
    summary="The caseload: counts by label, recovery and trend, off-track goals, milestones, alerts, and a page of "
            "client rows", responses=problems(401, 403, 422),
)
async def read_caseload(
    who: Searcher, db: Db, request: Request,
    client_id: Annotated[list[UUID] | None, Query(max_length=100, description="At most 100 clients")] = None,
    since: Annotated[Timestamp | None, Query(description="Milestones period start (default 30 days ago)")] = None,
    until: Annotated[Timestamp | None, Query(description="Period end (default now); `since` after it is a 422")] = None,
    sort: Annotated[str | None, Query(max_length=200, description=SORT_HELP)] = None,
    safety_priority: Annotated[bool | None, Query(description="Rows with (true) or without (false) an open or "
                                                              "acknowledged safety alert")] = None,
    off_track: Annotated[bool | None, Query(description="Rows with (true) or without (false) off-track goals")] = None,
    stale: Annotated[bool | None, Query(description="Rows last measured over 4 weeks ago or never (true), or "
                                                    "within them (false)")] = None,
    limit: Annotated[int, Query(ge=1, le=progress.MAX_LIMIT, description="Rows per page")] = progress.DEFAULT_LIMIT,
    cursor: Annotated[str | None, caseload.CURSOR.query(annotated=True)] = None,
) -> Response:
    result = await progress.caseload_summary(
        db, who, client_ids=client_id, since=since, until=until, sort=sort, safety_priority=safety_priority,
        off_track=off_track, stale=stale, limit=limit, cursor=cursor,
    )
    headers = dict(NO_STORE)
    if result.next_cursor:
        url = request.url.include_query_params(cursor=result.next_cursor)
        headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return JSONOut(result.model_dump(mode="json"), headers=headers)


@router.get(
    "/v1/clients/{client_id}/summary", response_model=ClinicalSummary, operation_id="read_client_summary",
    summary="A strengths-based clinical summary, ready to paste into an EHR note",
    responses=problems(401, 403, 404, 410, 422),
)
async def read_summary(
    client_id: UUID, who: Reader, db: Db,
    since: Annotated[Day | None, Query(description="Progress since this date (default 30 days ago)")] = None,
) -> Response:
    result = await summary.clinical_summary(db, who, client_id, since=since)
    return JSONOut(result.model_dump(mode="json"), headers=NO_STORE)


SVG_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "description": "An accessible SVG chart", "content": {"image/svg+xml": {"schema": {"type": "string"}}}}}


@router.get(
    "/v1/clients/{client_id}/progress.svg", response_class=Response, operation_id="read_client_progress_chart",
    summary="A chart of one marker over time, with milestones and severity bands",
    responses={**SVG_RESPONSE, **problems(401, 403, 404, 410, 422)},
)
async def read_chart(
    client_id: UUID, who: Reader, db: Db,
    marker_id: Annotated[UUID | None, Query(description="The marker to chart (default: the first goal's)")] = None,
    since: Annotated[Timestamp | None, Query(description="From (default: the first measurement)")] = None,
    until: Annotated[Timestamp | None,
                     Query(description="To (default: the last measurement); `since` after it is a 422")] = None,
) -> Response:
    svg = await chart.progress_chart(db, who, client_id, marker_id, since=since, until=until)
    return Response(svg, media_type="image/svg+xml", headers=NO_STORE)

