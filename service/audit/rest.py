"""``GET /v1/audit-events``: the organization's audit trail, under the ``AuditEvent`` search scope (the query is
``service.audit.service.search``).

(No ``from __future__ import annotations`` here: FastAPI must see the real parameter types.)
"""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from service.api import cursors
from service.api.dependencies import Db, needs, problems
from service.api.http import NO_STORE, JSONOut, StrictRoute
from service.audit import service as audit
from service.auth.principal import Principal
from service.collections.types import Out, QueryText, Timestamp
from service.models.audit import AuditAction, AuditOutcome

router = APIRouter(prefix="/v1", tags=["Audit"], route_class=StrictRoute)


class AuditEventOut(Out):
    id: UUID
    at: datetime
    app_id: str | None
    subject: str | None
    action: AuditAction
    resource_type: str | None
    resource_ids: list[UUID]
    client_ids: list[UUID]
    outcome: AuditOutcome
    status_code: int | None
    request_id: str | None
    remote_addr: str | None
    method: str | None
    path: str | None


class AuditEventPage(Out):
    data: list[AuditEventOut]
    next_cursor: str | None = None


Searcher = Annotated[Principal, needs("AuditEvent", "s")]


@router.get(
    "/audit-events", response_model=AuditEventPage, operation_id="list_audit_events",
    summary="The audit trail: who read or wrote which records, when, from where, with what outcome",
    responses=problems(400, 401, 403, 422),
)
async def list_audit_events(
    who: Searcher, db: Db, request: Request,
    client_id: Annotated[UUID | None, Query(description="Events naming this client (patient)")] = None,
    resource_type: Annotated[QueryText | None, Query(max_length=100, description="e.g. Strength")] = None,
    resource_id: Annotated[UUID | None, Query(description="Events naming this record")] = None,
    action: Annotated[AuditAction | None, Query()] = None,
    outcome: Annotated[AuditOutcome | None, Query()] = None,
    app: Annotated[QueryText | None, Query(max_length=200, description="The OAuth client_id that acted")] = None,
    since: Annotated[Timestamp | None, Query(description="At or after")] = None,
    until: Annotated[Timestamp | None, Query(description="Before")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size (max 500)")] = 50,
    cursor: Annotated[str | None, cursors.AUDIT.query(annotated=True)] = None,
) -> Response:
    data, next_cursor = await audit.search(
        db, who, limit=limit, cursor=cursor, client_id=client_id, resource_type=resource_type,
        resource_id=resource_id, action=action, outcome=outcome, app=app, since=since, until=until,
    )
    headers = dict(NO_STORE)
    if next_cursor:
        url = request.url.include_query_params(cursor=next_cursor)
        headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return JSONOut({"data": data, "next_cursor": next_cursor}, headers=headers)
