"""The Bulk Data export runner: claims export jobs and writes their NDJSON files, one page per step.

Same process model as the webhook dispatcher: ``serve`` runs one (unless BULK_EXPORT_RUNNER=false),
``strengths-api worker`` runs one, and several may run at once. A job is claimed through
``bulk_export_claim`` (``FOR UPDATE SKIP LOCKED``), which leases it; each step then runs in one tenant
transaction (the job's organization and, for a patient-context token, its patient: row-level security applies
as to any request) that checks the lease, reads one page of records as of the job's ``transactionTime``, maps
them with the facade's mapping functions, appends the lines to the type's file as one chunk, and moves the
job's cursor and lease on. The chunk and the cursor commit together, so a worker that dies mid-job leaves
either a whole page or none of it; when its lease runs out another worker continues from the cursor, and no
line is written twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.audit.service import AuditTrail
from service.auth.principal import Principal
from service.auth.scopes import parse_scopes
from service.collections.types import uuid7
from service.db import set_tenant, tenant_transaction
from service.domain.registry import COLLECTIONS, REGISTRY  # the worker never builds the app
from service.fhir import mapping, snapshot
from service.fhir.export_jobs import AUDIT_TYPE
from service.fhir.search import with_alert_ids
from service.ops.polling import poll_forever
from service.settings import Settings

log = logging.getLogger("strengths.bulk_export")

MAX_FAILURES = 3
RESOURCES = {coll.name: coll.resource for coll in COLLECTIONS}  # scope resource of each collection
SWEEP_EVERY_SECONDS = 60.0

_CLAIM = text("SELECT claimed_org, claimed_id, claimed_token FROM bulk_export_claim(:lease)")
_SWEEP = text("SELECT bulk_export_sweep()")
_JOB = text("SELECT * FROM bulk_export_jobs WHERE org_id = :org AND id = :id AND lease_token = :token "
            "AND status = 'in-progress' FOR UPDATE")
_STILL_OPEN = text("SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid = ANY(:w)")
_MOVE = text("UPDATE bulk_export_jobs SET step = :step, after_id = :after, resources = resources + :n, "
             "waiting_for = '{}', lease_until = now() + make_interval(secs => :lease), updated_at = now() "
             "WHERE org_id = :org AND id = :id")
_WAIT = text("UPDATE bulk_export_jobs SET lease_until = now() + make_interval(secs => :wait), updated_at = now() "
             "WHERE org_id = :org AND id = :id")
_LAST_FILE = text("SELECT id, part, lines FROM bulk_export_files WHERE org_id = :org AND job_id = :job "
                  "AND resource_type = :type ORDER BY part DESC LIMIT 1")
_NEW_FILE = text("INSERT INTO bulk_export_files (org_id, id, job_id, resource_type, part) "
                 "VALUES (:org, :id, :job, :type, :part)")
_CHUNK = text(
    "INSERT INTO bulk_export_chunks (org_id, file_id, seq, collection, record_ids, client_ids, lines, data) "
    "SELECT :org, :file, coalesce(max(seq), 0) + 1, :collection, CAST(:ids AS uuid[]), CAST(:clients AS uuid[]), "
    ":n, :data FROM bulk_export_chunks WHERE org_id = :org AND file_id = :file"
)
_GROW = text("UPDATE bulk_export_files SET lines = lines + :n WHERE org_id = :org AND id = :file")
_DONE = text("UPDATE bulk_export_jobs SET status = 'completed', completed_at = now(), lease_token = NULL, "
             "lease_until = NULL, expires_at = now() + make_interval(secs => :keep), updated_at = now() "
             "WHERE org_id = :org AND id = :id")
_CLIENTS = text("SELECT c.collection, array_agg(DISTINCT u.client) AS clients FROM bulk_export_chunks c "
                "JOIN bulk_export_files f ON f.org_id = c.org_id AND f.id = c.file_id "
                "CROSS JOIN unnest(c.client_ids) AS u(client) WHERE f.org_id = :org AND f.job_id = :id "
                "GROUP BY c.collection")
_FAILED = text("UPDATE bulk_export_jobs SET failures = failures + 1, lease_token = NULL, updated_at = now(), "
               "lease_until = now() + make_interval(secs => :wait) WHERE org_id = :org AND id = :id "
               "AND lease_token = :token RETURNING failures")
_GIVE_UP = text("UPDATE bulk_export_jobs SET status = 'failed', error = :error WHERE org_id = :org AND id = :id")
_DROP_FILES = text("DELETE FROM bulk_export_files WHERE org_id = :org AND job_id = :id")


def principal_of(job: Any) -> Principal:
    """The token that started the job, as far as reading goes: its organization, app, scopes and patient."""
    return Principal(org_id=job.org_id, app_id=job.app_id, subject=job.subject, scopes=parse_scopes(job.scopes),
                     patient_id=job.patient_id)


class ExportRunner:
    def __init__(self, engine: AsyncEngine, settings: Settings,
                 beat: Callable[[bool], None] | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.beat = beat or (lambda ok: None)
        self._last_sweep = 0.0

    async def run_forever(self) -> None:
        """Run jobs until cancelled; a failing database or a bug never kills the loop."""
        await poll_forever(self.run_once, self.settings.bulk_export_poll_seconds, self.beat, "bulk export runner")

    async def run_once(self) -> bool:
        """Sweep expired files now and then; claim one due job and run it as far as it goes."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_sweep >= SWEEP_EVERY_SECONDS:
            async with self.engine.begin() as conn:
                await conn.execute(_SWEEP)
            self._last_sweep = loop.time()
        async with self.engine.begin() as conn:
            row = (await conn.execute(_CLAIM, {"lease": self.settings.bulk_export_lease_seconds})).first()
        if row is None:
            return False
        await self.run_job(row.claimed_org, row.claimed_id, row.claimed_token)
        return True

    async def run_job(self, org_id: UUID, job_id: UUID, token: UUID) -> None:
        while True:
            try:
                outcome = await self.step(org_id, job_id, token)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the job is retried, then failed; the runner goes on
                log.exception("bulk export step failed", extra={"job_id": str(job_id)})
                await self._failed(org_id, job_id, token)
                return
            self.beat(True)
            await self.after_step(outcome)
            if outcome != "more":
                return

    async def after_step(self, outcome: str) -> None:
        """Called after every step (a subclass may watch progress); nothing to do here."""

    async def step(self, org_id: UUID, job_id: UUID, token: UUID) -> str:
        """One page of one type, in one transaction: "more", "done", "waiting" or "lost" (cancelled, or the
        lease went to another worker)."""
        async with tenant_transaction(self.engine, org_id) as conn:
            job = (await conn.execute(_JOB, {"org": org_id, "id": job_id, "token": token})).first()
            if job is None:
                return "lost"
            await set_tenant(conn, org_id, job.patient_id)  # from here on, the job's patient only (if any)
            if job.waiting_for and (await conn.execute(_STILL_OPEN, {"w": job.waiting_for})).scalar_one():
                await conn.execute(_WAIT, {"org": org_id, "id": job_id, "wait": self.settings.bulk_export_poll_seconds})
                return "waiting"
            who = principal_of(job)
            if job.step >= len(job.plan):
                await self._complete(conn, job, who)
                return "done"
            fhir_type, collection = job.plan[job.step]
            rows = await snapshot.page(conn, who, collection, job.after_id, self.settings.bulk_export_page_size,
                                       job.transaction_time)
            params = {"org": org_id, "id": job_id, "lease": self.settings.bulk_export_lease_seconds}
            if not rows:
                await conn.execute(_MOVE, {**params, "step": job.step + 1, "after": None, "n": 0})
                return "more"
            written = await self._write(conn, who, job, fhir_type, collection, rows)
            await conn.execute(_MOVE, {**params, "step": job.step, "after": rows[-1].record_id, "n": written})
        return "more"

    async def _write(self, conn: AsyncConnection, who: Principal, job: Any, fhir_type: str, collection: str,
                     rows: list[Any]) -> int:
        """Map the page's live records (changed after ``_since``, if given) and append them as one chunk."""
        live = [r for r in rows if r.action is not None and r.action != "deleted"
                and (job.since is None or r.changed_at > job.since)]
        records = [(collection, mapping.as_json(r.data)) for r in live]
        markers = await snapshot.records_as_of(conn, who, "outcome-markers", mapping.marker_ids(records),
                                               job.transaction_time)
        questionnaire = fhir_type == "QuestionnaireResponse"
        await with_alert_ids(conn, who, records, as_of=job.transaction_time)  # as reads compute them, as of then
        lines: list[bytes] = []
        ids: list[Any] = []
        clients: list[Any] = []
        for _, data in records:
            made = mapping.resource(collection, data, markers, questionnaire=questionnaire)
            if made is not None:
                lines.append(orjson.dumps(made) + b"\n")
                ids.append(data["id"])
                clients.append(data[REGISTRY[collection].owner_column])
        if lines:
            await self._append(conn, job, fhir_type, collection, lines, ids, clients)
        return len(lines)

    async def _append(self, conn: AsyncConnection, job: Any, fhir_type: str, collection: str, lines: list[bytes],
                      ids: list[Any], clients: list[Any]) -> None:
        last = (await conn.execute(_LAST_FILE, {"org": job.org_id, "job": job.id, "type": fhir_type})).first()
        if last is None or last.lines >= self.settings.bulk_export_file_max_lines:
            file_id = uuid7()
            await conn.execute(_NEW_FILE, {"org": job.org_id, "id": file_id, "job": job.id, "type": fhir_type,
                                           "part": (last.part + 1) if last else 1})
        else:
            file_id = last.id
        await conn.execute(_CHUNK, {"org": job.org_id, "file": file_id, "collection": collection, "ids": ids,
                                    "clients": sorted(set(clients), key=str), "n": len(lines),
                                    "data": b"".join(lines)})
        await conn.execute(_GROW, {"org": job.org_id, "file": file_id, "n": len(lines)})

    async def _complete(self, conn: AsyncConnection, job: Any, who: Principal) -> None:
        """Done: the files are kept for BULK_EXPORT_RETENTION_HOURS; the export is audited (whose records, of
        which types, for which app), each download is audited again when it happens."""
        await conn.execute(_DONE, {"org": job.org_id, "id": job.id,
                                   "keep": self.settings.bulk_export_retention_hours * 3600})
        trail = AuditTrail(request_id=f"bulk-export-{job.id}", method="GET", path=job.request_url[:2000],
                           remote=None, action="export", principal=who)
        trail.seen(AUDIT_TYPE, job.id, job.patient_id)
        for row in (await conn.execute(_CLIENTS, {"org": job.org_id, "id": job.id})).all():
            trail.seen_many(RESOURCES[row.collection], [], row.clients)
        await trail.insert(conn, 200)

    async def _failed(self, org_id: UUID, job_id: UUID, token: UUID) -> None:
        """A step failed: retry the job later (another worker may take it); after MAX_FAILURES it fails and
        its files are removed. The error is in the log; the client sees no internals."""
        try:
            async with tenant_transaction(self.engine, org_id) as conn:
                failures = (await conn.execute(_FAILED, {"org": org_id, "id": job_id, "token": token,
                                                         "wait": self.settings.bulk_export_poll_seconds * 5})).scalar()
                if failures is not None and failures >= MAX_FAILURES:
                    await conn.execute(_GIVE_UP, {"org": org_id, "id": job_id, "error": (
                        f"the export failed {failures} times; the error is in the server's log (job {job_id})")})
                    await conn.execute(_DROP_FILES, {"org": org_id, "id": job_id})
        except Exception:  # noqa: BLE001 - the lease then runs out and another attempt follows
            log.exception("bulk export failure could not be recorded", extra={"job_id": str(job_id)})
