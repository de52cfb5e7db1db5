"""REST routes for progress: each declares its scope with needs("Progress", ...).

(No ``from __future__ import annotations`` here: FastAPI must see the real parameter types.)
"""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from service import audit
from service.auth.principal import Principal
from service.auth.rest import needs
from service.collections.rest import Db, problems
from service.collections.types import Day, Timestamp
from service.http import NO_STORE, JSONOut, StrictRoute
from service.progress import chart, summary
from service.progress import service as progress
from service.progress.schemas import CaseloadSummary, ClientProgress, ClinicalSummary

router = APIRouter(tags=["Progress"], route_class=StrictRoute)
Reader = Annotated[Principal, needs("Progress", "r")]
Searcher = Annotated[Principal, needs("Progress", "s")]
OffTrackDays = Annotated[int | None, Query(ge=1, le=3650, description="Window for off_track (default 28 days)")]


def _settings(request: Request):  # noqa: ANN202 - the app's Settings
    return request.app.state.ctx.settings


@router.get(
    "/v1/clients/{client_id}/progress", response_model=ClientProgress, operation_id="read_client_progress",
    summary="A client's progress per goal", responses=problems(401, 403, 404, 410, 422),
)
async def read_progress(client_id: UUID, who: Reader, db: Db, request: Request,
                        off_track_days: OffTrackDays = None) -> Response:
    days = off_track_days or _settings(request).progress_off_track_days
    audit.seen("Progress", client_id, client_id)
    result = await progress.client_progress(db, who, client_id, off_track_days=days)
    return JSONOut(result.model_dump(mode="json"), headers=NO_STORE)


@router.get(
    "/v1/progress/summary", response_model=CaseloadSummary, operation_id="read_caseload_summary",
    summary="The caseload's progress: labels, trends, off-track goals, milestones, alerts, stale markers",
    responses=problems(401, 403, 422),
)
async def read_caseload(
    who: Searcher, db: Db, request: Request,
    client_id: Annotated[list[UUID] | None, Query(max_length=100, description="At most 100 clients")] = None,
    since: Annotated[Timestamp | None, Query(description="Period start (default 30 days ago)")] = None,
    until: Annotated[Timestamp | None, Query(description="Period end (default now); `since` after it is a 422")] = None,
    stale_days: Annotated[int | None, Query(ge=1, le=3650, description="Stale after (default 14 days)")] = None,
    off_track_days: OffTrackDays = None,
) -> Response:
    settings = _settings(request)
    for cid in client_id or []:
        audit.seen("Progress", cid, cid)
    result = await progress.caseload_summary(
        db, who, client_ids=client_id, since=since, until=until,
        stale_days=stale_days or settings.progress_stale_days,
        off_track_days=off_track_days or settings.progress_off_track_days,
    )
    return JSONOut(result.model_dump(mode="json"), headers=NO_STORE)


@router.get(
    "/v1/clients/{client_id}/summary", response_model=ClinicalSummary, operation_id="read_client_summary",
    summary="A strengths-based clinical summary, ready to paste into an EHR note",
    responses=problems(401, 403, 404, 410, 422),
)
async def read_summary(
    client_id: UUID, who: Reader, db: Db, request: Request,
    since: Annotated[Day | None, Query(description="Progress since this date (default 30 days ago)")] = None,
) -> Response:
    audit.seen("Progress", client_id, client_id)
    result = await summary.clinical_summary(db, who, client_id, since=since,
                                            off_track_days=_settings(request).progress_off_track_days)
    return JSONOut(result.model_dump(mode="json"), headers=NO_STORE)


SVG_RESPONSE = {200: {"description": "An accessible SVG chart", "content": {"image/svg+xml": {
    "schema": {"type": "string"}}}}}


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
    audit.seen("Progress", client_id, client_id)
    svg = await chart.progress_chart(db, who, client_id, marker_id, since=since, until=until)
    return Response(svg, media_type="image/svg+xml", headers=NO_STORE)

