"""Records as they were at an instant, read from every version of every record (``RECORD_VERSIONS``).

A Bulk Data export reads each record's latest version whose ``changed_at`` is at or before its
``transactionTime``, in keyset pages of record ids, so that a job resumed by another worker reads exactly what
the first one would have (service/fhir/export_jobs.py explains why that set no longer changes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, case, select, true
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.collections.repository import readable
from service.models.records import RECORD_VERSIONS

HIST = RECORD_VERSIONS


def page_statement(who: Principal, collection: str, after: UUID | None, limit: int, as_of: datetime) -> Select[Any]:
    """The next ``limit`` record ids of the collection (in id order, after ``after``), each with its latest
    version at or before ``as_of`` (null columns when it had none yet: created later)."""
    ids = readable(HIST, who).with_only_columns(HIST.c.record_id).where(HIST.c.collection == collection)
    if after is not None:
        ids = ids.where(HIST.c.record_id > after)
    page = ids.distinct().order_by(HIST.c.record_id).limit(limit).subquery("ids")
    latest = (select(HIST.c.action, HIST.c.data, HIST.c.changed_at)
              .where(HIST.c.org_id == who.org_id, HIST.c.collection == collection,
                     HIST.c.record_id == page.c.record_id, HIST.c.changed_at <= as_of)
              .order_by(HIST.c.version.desc()).limit(1).lateral("v"))
    return (select(page.c.record_id, latest.c.action, latest.c.data, latest.c.changed_at)
            .select_from(page.outerjoin(latest, true())).order_by(page.c.record_id))


async def page(conn: AsyncConnection, who: Principal, collection: str, after: UUID | None, limit: int,
               as_of: datetime) -> list[Any]:
    return list((await conn.execute(page_statement(who, collection, after, limit, as_of))).all())


async def records_as_of(conn: AsyncConnection, who: Principal, collection: str, ids: set[Any],
                        as_of: datetime) -> dict[str, dict[str, Any]]:
    """Referenced records (outcome markers) by id as they were at ``as_of``; a record created by a transaction
    that began after it (while the referencing one had begun before) is taken at its first version."""
    if not ids:
        return {}
    before = HIST.c.changed_at <= as_of
    stmt = (readable(HIST, who).with_only_columns(HIST.c.record_id, HIST.c.data)
            .where(HIST.c.collection == collection, HIST.c.record_id.in_([UUID(str(i)) for i in ids]))
            .ext(distinct_on(HIST.c.record_id))
            .order_by(HIST.c.record_id, before.desc(), case((before, -HIST.c.version), else_=HIST.c.version)))
    return {str(r.record_id): r.data for r in (await conn.execute(stmt)).all()}
