"""``GET /v1/audit-events``: the organization's audit trail, under the ``AuditEvent`` search scope (the query is
``service.audit.service.search``).

(No ``from __future__ import annotations`` here: FastAPI must see the real parameter types.)
"""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from service.api import cursors
from service.api.dependencies import Db, needs, problems
from service.api.http import NO_STORE, JSONOut, Paged, StrictRoute
from service.audit import service as audit
from service.auth.principal import Principal
from service.collections.types import Instant, Out, QueryText
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


class AuditQuery(Paged):
    client_id: UUID | None = Field(None, description="Events naming this client (patient)")
    resource_type: QueryText | None = Field(None, max_length=100, description="e.g. Strength")
    resource_id: UUID | None = Field(None, description="Events naming this record")
    action: AuditAction | None = None
    outcome: AuditOutcome | None = None
    app: QueryText | None = Field(None, max_length=200, description="The OAuth client_id that acted")
    since: Instant | None = Field(None, description="At or after (a date: 00:00 UTC)")
    until: Instant | None = Field(None, description="Before (a date: 00:00 UTC)")
    cursor: str | None = cursors.AUDIT.field()


@router.get(
    "/audit-events", response_model=AuditEventPage, operation_id="list_audit_events",
    summary="The audit trail: who read or wrote which records, when, from where, with what outcome",
    responses=problems(400, 401, 403, 422),
)
async def list_audit_events(
    who: Searcher, db: Db, request: Request, query: Annotated[AuditQuery, Query()],
) -> Response:
    data, next_cursor = await audit.search(
        db, who, limit=query.limit, cursor=query.cursor, client_id=query.client_id,
        resource_type=query.resource_type, resource_id=query.resource_id, action=query.action,
        outcome=query.outcome, app=query.app, since=query.since, until=query.until,
    )
    headers = dict(NO_STORE)
    if next_cursor:
        url = request.url.include_query_params(cursor=next_cursor)
        headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return JSONOut({"data": data, "next_cursor": next_cursor}, headers=headers)
