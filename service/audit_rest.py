"""``GET /v1/audit-events``: the organization's audit trail, under the ``AuditEvent`` search scope.

(No ``from __future__ import annotations`` here: FastAPI must see the real parameter types.)
"""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field
from sqlalchemy import select

from service import cursors
from service.auth.principal import Principal
from service.auth.rest import needs
from service.collections.repository import fetch_page
from service.collections.rest import Db, problems
from service.collections.types import Instant, Out, QueryText
from service.http import NO_STORE, JSONOut, Paged, StrictRoute
from service.models.audit import AuditAction, AuditEvent, AuditOutcome

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
FIELDS = [c for c in AuditEvent.__table__.c if c.name not in ("org_id", "seq")]


def encode_seq(seq: int) -> str:
    return cursors.AUDIT.encode(seq)


def decode_seq(cursor: str) -> int:
    return int(cursors.AUDIT.decode(cursor, "cursor")[0])


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
    t = AuditEvent.__table__
    stmt = select(*FIELDS, t.c.seq).where(t.c.org_id == who.org_id)
    if who.patient_id is not None:  # a patient's own app sees only the events about that patient alone (as the
        stmt = stmt.where(t.c.client_ids == [who.patient_id])  # row-level policy patient_read also says)
    if query.client_id is not None:
        stmt = stmt.where(t.c.client_ids.contains([query.client_id]))
    if query.resource_id is not None:
        stmt = stmt.where(t.c.resource_ids.contains([query.resource_id]))
    for column, value in ((t.c.resource_type, query.resource_type), (t.c.action, query.action),
                          (t.c.outcome, query.outcome), (t.c.app_id, query.app)):
        if value is not None:
            stmt = stmt.where(column == value)
    if query.since is not None:
        stmt = stmt.where(t.c.at >= query.since)
    if query.until is not None:
        stmt = stmt.where(t.c.at < query.until)
    if query.cursor:
        stmt = stmt.where(t.c.seq > decode_seq(query.cursor))
    rows, next_cursor = await fetch_page(db, stmt.order_by(t.c.seq), query.limit, lambda r: encode_seq(r.seq))
    headers = dict(NO_STORE)
    if next_cursor:
        url = request.url.include_query_params(cursor=next_cursor)
        headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    data = [{k: v for k, v in r._mapping.items() if k != "seq"} for r in rows]
    return JSONOut({"data": data, "next_cursor": next_cursor}, headers=headers)
