"""FHIR Bulk Data export jobs: kick-off, status, manifest, cancel and file contents (the worker that runs them is
service/fhir/export_runner.py).

A job belongs to the organization, app and patient (for a patient-context token) that started it: anyone else
gets a 404, as for a job that does not exist. It exports under the scopes the token had at kick-off.

``transactionTime`` is a ``clock_timestamp()`` taken at kick-off; the job exports, for each record, its latest
version whose ``changed_at`` (its writing transaction's start) is at or before it. A transaction that began
before that instant may still be open at kick-off and commit later, so kick-off also notes the virtual
transaction ids open in this database (``pg_locks``, readable by any role), and the worker reads nothing until
they have all ended: from then on the set of versions at or before ``transactionTime`` can no longer change,
so every page (and a job resumed by another worker) reads the same snapshot, and an export with
``_since=<transactionTime>`` starts exactly where this one ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import audit
from service.auth.principal import Principal
from service.auth.scopes import required_scope
from service.collections.registry import REGISTRY
from service.collections.types import uuid7
from service.db import set_tenant
from service.errors import Forbidden, NotFound, TooManyRequests
from service.fhir.search import OBSERVATION_RESOURCES
from service.fhir.urls import BadSearch
from service.settings import Settings

# What each exported FHIR type is made of, in export order.
EXPORT_TYPES: dict[str, tuple[str, ...]] = {
    "Patient": ("clients",),
    "Goal": ("goals",),
    "Observation": tuple(OBSERVATION_RESOURCES),
    "QuestionnaireResponse": ("measurements",),
    "Flag": ("safety-alerts",),
}
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
NDJSON = "application/fhir+ndjson"
ACTIVE = ("accepted", "in-progress")
AUDIT_TYPE = "BulkExport"


@dataclass(frozen=True)
class KickOff:
    level: str  # system, patient or group
    group_id: UUID | None
    types: list[str] | None
    since: datetime | None
    request_url: str


def parse_types(values: list[str]) -> list[str] | None:
    if not values:
        return None
    names = [n.strip() for raw in values for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORT_TYPES]
    if unknown or not names:
        raise BadSearch(f"_type: this server exports {', '.join(EXPORT_TYPES)} (not {', '.join(unknown) or 'nothing'})")
    return list(dict.fromkeys(names))


def parse_since(values: list[str]) -> datetime | None:
    if not values:
        return None
    raw = values[-1]
    try:
        since = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        since = None
    if since is None or since.tzinfo is None or "T" not in raw:
        raise BadSearch(f"_since: {raw!r} is not a FHIR instant (a date and time with a time zone)")
    return since


def parse_format(values: list[str]) -> None:
    if values and values[-1] not in OUTPUT_FORMATS:
        raise BadSearch(f"_outputFormat: this server writes {NDJSON} (also named {', '.join(OUTPUT_FORMATS[1:])})")


def plan_for(who: Principal, types: list[str] | None) -> list[list[str]]:
    """[FHIR type, collection] steps the token may export: a type asked for without its ``s`` scope is a 403;
    with no ``_type``, the types (and Observation kinds) the token may search."""
    steps: list[list[str]] = []
    for fhir_type in types or EXPORT_TYPES:
        allowed = [coll for coll in EXPORT_TYPES[fhir_type] if who.allows(REGISTRY[coll].resource, "s")]
        if not allowed and types:
            raise Forbidden(required_scope(fhir_type, "s", who.context))
        steps += [[fhir_type, coll] for coll in allowed]
    if not steps:
        raise Forbidden(required_scope("*", "s", who.context))
    return steps


_ACTIVE_COUNT = text("SELECT count(*) FROM bulk_export_jobs WHERE org_id = :org AND status IN ('accepted', "
                     "'in-progress')")
_NOW = text("SELECT clock_timestamp()")
# Transactions open in this database right now, but ours (pg_stat_activity's datname and pid are visible to
# every role; pg_locks too).
_OPEN = text("SELECT coalesce(array_agg(l.virtualxid), '{}') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
             "WHERE l.locktype = 'virtualxid' AND l.granted AND a.datname = current_database() "
             "AND l.pid <> pg_backend_pid()")
_INSERT = text(
    "INSERT INTO bulk_export_jobs (org_id, id, app_id, subject, scopes, patient_id, level, group_id, plan, since, "
    "request_url, transaction_time, waiting_for) VALUES (:org, :id, :app, :subject, :scopes, :patient, :level, "
    ":group_id, CAST(:plan AS jsonb), :since, :url, :t, CAST(:waiting AS text[]))"
)


async def kick_off(conn: AsyncConnection, who: Principal, settings: Settings, ask: KickOff) -> UUID:
    steps = plan_for(who, ask.types)
    active = (await conn.execute(_ACTIVE_COUNT, {"org": who.org_id})).scalar_one()
    if active >= settings.bulk_export_max_active_jobs:
        raise TooManyRequests(f"This organization has {active} exports queued or running (at most "
                              f"{settings.bulk_export_max_active_jobs}); retry when one has finished",
                              headers={"Retry-After": "60"})
    transaction_time = (await conn.execute(_NOW)).scalar_one()
    waiting = (await conn.execute(_OPEN)).scalar_one()
    job_id = uuid7()
    await conn.execute(_INSERT, {
        "org": who.org_id, "id": job_id, "app": who.app_id, "subject": who.subject,
        "scopes": " ".join(s.text for s in who.scopes), "patient": who.patient_id, "level": ask.level,
        "group_id": ask.group_id, "plan": json.dumps(steps), "since": ask.since, "url": ask.request_url,
        "t": transaction_time, "waiting": list(waiting)})
    audit.set_action("export")
    audit.seen(AUDIT_TYPE, job_id, who.patient_id)
    return job_id


_JOB = text("SELECT * FROM bulk_export_jobs WHERE org_id = :org AND id = :id AND app_id = :app "
            "AND patient_id IS NOT DISTINCT FROM :patient")


def job_uuid(text_id: str) -> UUID:
    try:
        return UUID(text_id)
    except ValueError:
        raise NotFound(f"No export {text_id}") from None


async def load(conn: AsyncConnection, who: Principal, job_id: UUID, *, for_update: bool = False) -> Any:
    """The job, if this organization, app and patient started it; otherwise NotFound (as if absent)."""
    stmt = _JOB.text + (" FOR UPDATE" if for_update else "")
    row = (await conn.execute(text(stmt), {"org": who.org_id, "id": job_id, "app": who.app_id,
                                           "patient": who.patient_id})).first()
    if row is None or row.status == "cancelled":
        raise NotFound(f"No export {job_id}")
    audit.seen(AUDIT_TYPE, job_id, who.patient_id)
    return row


def expired(job: Any) -> bool:
    """Past its retention (the worker's sweep deletes the files within a minute; until then they are refused)."""
    return job.status == "expired" or (job.expires_at is not None and job.expires_at <= datetime.now(UTC))


async def files(conn: AsyncConnection, job: Any) -> list[Any]:
    return list((await conn.execute(text(
        "SELECT id, resource_type, part, lines FROM bulk_export_files WHERE org_id = :org AND job_id = :id "
        "AND lines > 0 ORDER BY array_position(CAST(:order AS text[]), resource_type), part"),
        {"org": job.org_id, "id": job.id, "order": list(EXPORT_TYPES)})).all())


def progress(job: Any) -> str:
    """X-Progress: what a running job is doing, in words."""
    steps = job.plan
    if job.waiting_for:
        return f"waiting for {len(job.waiting_for)} transactions open at transactionTime to end"
    if job.step >= len(steps):
        return f"finishing: {job.resources} resources written"
    fhir_type = steps[job.step][0]
    types = list(dict.fromkeys(s[0] for s in steps))
    return (f"exporting {fhir_type} ({types.index(fhir_type) + 1} of {len(types)} types); "
            f"{job.resources} resources written")


def manifest(job: Any, rows: list[Any], base: str) -> dict[str, Any]:
    return {
        "transactionTime": job.transaction_time.isoformat().replace("+00:00", "Z"),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [{"type": r.resource_type, "url": f"{base}/$export-status/{job.id}/files/{r.id}", "count": r.lines}
                   for r in rows],
        "error": [],
    }


async def cancel(conn: AsyncConnection, who: Principal, job_id: UUID) -> None:
    """DELETE on the status URL: the job stops (its worker's next step finds it cancelled) and its files go."""
    job = await load(conn, who, job_id, for_update=True)
    if job.status == "expired":
        raise NotFound(f"No export {job_id} (it expired)")
    await conn.execute(text("DELETE FROM bulk_export_files WHERE org_id = :org AND job_id = :id"),
                       {"org": job.org_id, "id": job.id})
    await conn.execute(text("UPDATE bulk_export_jobs SET status = 'cancelled', lease_token = NULL, "
                            "updated_at = now() WHERE org_id = :org AND id = :id"), {"org": job.org_id, "id": job.id})
    audit.set_action("delete")


_FILE = text("SELECT f.id, f.resource_type FROM bulk_export_files f JOIN bulk_export_jobs j ON j.org_id = f.org_id "
             "AND j.id = f.job_id WHERE f.org_id = :org AND f.id = :file AND j.id = :job AND j.status = 'completed'")
_CHUNKS = text("SELECT seq, collection, record_ids, client_ids, data FROM bulk_export_chunks "
               "WHERE org_id = :org AND file_id = :file AND seq > :after ORDER BY seq LIMIT 16")


async def file_of(conn: AsyncConnection, who: Principal, job_id: UUID, file_text: str) -> Any:
    job = await load(conn, who, job_id)
    if expired(job):
        raise NotFound(f"Export {job_id} has expired: its files were deleted")
    try:
        file_id = UUID(file_text)
    except ValueError:
        raise NotFound(f"No file {file_text}") from None
    row = (await conn.execute(_FILE, {"org": who.org_id, "file": file_id, "job": job_id})).first()
    if row is None:
        raise NotFound(f"No file {file_text} in export {job_id}")
    return row


async def file_lines(engine: AsyncEngine, who: Principal, file_id: UUID) -> AsyncIterator[bytes]:
    """The file's NDJSON, chunk by chunk, each batch in a short transaction of its own (a slow reader holds no
    transaction open); every record sent is noted in the request's audit trail."""
    after = 0
    while True:
        async with engine.begin() as conn:
            await set_tenant(conn, who.org_id, who.patient_id)
            rows = (await conn.execute(_CHUNKS, {"org": who.org_id, "file": file_id, "after": after})).all()
        if not rows:
            return
        for row in rows:
            audit.seen_many(REGISTRY[row.collection].resource, row.record_ids, row.client_ids)
            yield bytes(row.data)
        after = rows[-1].seq
