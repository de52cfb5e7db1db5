"""Progress use cases, transport-free: REST and GraphQL call these, so both give the same numbers.

Each is a fixed number of statements whatever the size of the record or the caseload:
``client_progress`` 2 (the client, then one statement for alerts, goals, milestones, strengths, markers,
client measures and recovery), ``caseload_summary`` 1 (besides the unit of work's tenant ``set_config``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service import audit
from service.auth.principal import Principal
from service.collections import service
from service.collections.registry import REGISTRY
from service.errors import ValidationFailed
from service.progress import caseload, sql
from service.progress.schemas import CaseloadSummary, ClientProgress

DEFAULT_LIMIT, MAX_LIMIT = 50, 500


def check_period(since: datetime | None, until: datetime | None) -> None:
    """A report's period: ``since`` after ``until`` is a 422 naming ``since``."""
    if since and until and since > until:
        raise ValidationFailed.on("since", "since is after until", "since_after_until")


async def check_client(conn: AsyncConnection, who: Principal, client_id: UUID) -> Any:
    """The live client, else 404 (unknown, another organization's or another patient's) or 410 (deleted)."""
    return await service.fetch(conn, who, REGISTRY["clients"], client_id)


async def client_progress(conn: AsyncConnection, who: Principal, client_id: UUID) -> ClientProgress:
    audit.seen("Progress", client_id, client_id)  # asked for, so audited even when refused
    await check_client(conn, who, client_id)
    return await progress_of_live_client(conn, who, client_id)


async def progress_of_live_client(conn: AsyncConnection, who: Principal, client_id: UUID) -> ClientProgress:
    """``client_progress`` for a client the caller has already checked: one statement."""
    row = (await conn.execute(text(sql.CLIENT_PROGRESS), sql.client_params(who.org_id, client_id))).one()
    goals = [{k: v for k, v in g.items() if k != "ord"} for g in row.goals]
    return ClientProgress.model_validate({  # goals and measures: dicts, validated into their models
        "safety_priority": row.unresolved_alerts > 0, "open_safety_alerts": row.unresolved_alerts,
        "safety_alerts": row.alerts, "client_id": client_id, "recovery": row.recovery,
        "goals": goals, "client_measures": row.client_measures,
    })


async def caseload_summary(
    conn: AsyncConnection, who: Principal, *, client_ids: list[UUID] | None = None,
    since: datetime | None = None, until: datetime | None = None, sort: str | None = None,
    safety_priority: bool | None = None, off_track: bool | None = None, stale: bool | None = None,
    limit: int = DEFAULT_LIMIT, cursor: str | None = None,
) -> CaseloadSummary:
    """The token's organization (or patient), optionally restricted to ``client_ids``: counts over it and a
    page of its client rows (filters apply to the rows only). One statement."""
    for cid in client_ids or []:
        audit.seen("Progress", cid, cid)
    check_period(since, until)
    if not 1 <= limit <= MAX_LIMIT:  # REST declares the same bounds; GraphQL reaches here with any Int
        raise ValidationFailed.on("limit", f"must be between 1 and {MAX_LIMIT}", "out_of_range")
    order = caseload.Sort.parse(sort)
    params: dict[str, Any] = {"org": who.org_id, "since": since, "until": until, "limit_plus": limit + 1,
                              **sql.instrument_params()}
    if cursor:
        params.update(order.decode(cursor))
    if client_ids:
        params["client_ids"] = list(client_ids)
    if who.patient_id:
        params["patient"] = who.patient_id
    filters = {"safety_priority": safety_priority, "off_track": off_track, "stale": stale}
    statement = caseload.statement(order, filters, after=bool(cursor), listed=bool(client_ids),
                                   patient=who.patient_id is not None)
    row = dict((await conn.execute(text(statement), params)).one()._mapping)
    rows = row.pop("clients")
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = order.encode([float(v) for v in last["_keys"] if v is not None], UUID(last["client_id"]))
    for r in rows:
        del r["_keys"]
    audit.seen_many("Progress", (r["client_id"] for r in rows), (r["client_id"] for r in rows))
    return CaseloadSummary(**row, clients=rows, next_cursor=next_cursor)
