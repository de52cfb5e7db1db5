"""Progress use cases, transport-free: REST calls them, and a GraphQL adapter can call them too.

Each is a fixed number of statements whatever the size of the record or the caseload:
``client_progress`` 2 (the client, then one statement for alerts, goals, milestones, strengths and
markers), ``caseload_summary`` 1 (besides the unit of work's tenant ``set_config``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.collections import service
from service.collections.registry import REGISTRY
from service.errors import ValidationFailed
from service.progress import sql
from service.progress.schemas import CaseloadSummary, ClientProgress

DEFAULT_OFF_TRACK_DAYS = 28
DEFAULT_STALE_DAYS = 14



def check_period(since: datetime | None, until: datetime | None) -> None:
    """A report's period: ``since`` after ``until`` is a 422 naming ``since``."""
    if since and until and since > until:
        raise ValidationFailed.on("since", "since is after until", "since_after_until")


async def check_client(conn: AsyncConnection, who: Principal, client_id: UUID) -> Any:
    """The live client, else 404 (unknown, another organization's or another patient's) or 410 (deleted)."""
    return await service.fetch(conn, who, REGISTRY["clients"], client_id)


async def client_progress(
    conn: AsyncConnection, who: Principal, client_id: UUID, *, off_track_days: int = DEFAULT_OFF_TRACK_DAYS,
) -> ClientProgress:
    await check_client(conn, who, client_id)
    return await progress_of_live_client(conn, who, client_id, off_track_days=off_track_days)


async def progress_of_live_client(
    conn: AsyncConnection, who: Principal, client_id: UUID, *, off_track_days: int = DEFAULT_OFF_TRACK_DAYS,
) -> ClientProgress:
    """``client_progress`` for a client the caller has already checked: one statement."""
    params = sql.client_params(who.org_id, client_id, off_track_days)
    row = (await conn.execute(text(sql.CLIENT_PROGRESS), params)).one()
    goals = [{k: v for k, v in g.items() if k != "ord"} for g in row.goals]
    return ClientProgress(
        safety_priority=row.open_alerts > 0, open_safety_alerts=row.open_alerts, safety_alerts=row.alerts,
        client_id=client_id,
        off_track_days=off_track_days, goals=goals,  # type: ignore[arg-type]
    )


async def caseload_summary(
    conn: AsyncConnection, who: Principal, *, client_ids: list[UUID] | None = None,
    since: datetime | None = None, until: datetime | None = None,
    stale_days: int = DEFAULT_STALE_DAYS, off_track_days: int = DEFAULT_OFF_TRACK_DAYS,
) -> CaseloadSummary:
    """The token's organization (or patient), optionally restricted to ``client_ids``: one statement."""
    check_period(since, until)
    # The same bounds REST declares on its query (1..3650); GraphQL reaches here with any Int (found by fuzzing).
    for name, days in (("stale_days", stale_days), ("off_track_days", off_track_days)):
        if not 1 <= days <= 3650:
            raise ValidationFailed.on(name, "must be between 1 and 3650 days", "out_of_range")
    params: dict[str, Any] = {
        "org": who.org_id, "since": since, "until": until, "stale_days": stale_days, "off_days": off_track_days,
        **sql.instrument_params(),
    }
    if client_ids:
        params["client_ids"] = list(client_ids)
    if who.patient_id:
        params["patient"] = who.patient_id
    statement = sql.caseload_summary(listed=bool(client_ids), patient=who.patient_id is not None)
    row = (await conn.execute(text(statement), params)).one()
    return CaseloadSummary(**dict(row._mapping), stale_days=stale_days, off_track_days=off_track_days)
