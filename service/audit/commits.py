"""Group commit of the audit rows of read-only units of work (issue 25).

A read changes nothing, so its audit row need not share its transaction; what must hold is that no response
leaves before the row naming what it discloses is durably committed. ``GroupCommit.write`` gives exactly that: it
returns once the row is committed (``synchronous_commit`` as configured, ``on`` by default), and raises when it
could not be, so the caller answers with an error instead of the data. What it saves is the per-request write
transaction: rows that arrive while a commit is in flight wait for the next one and share it, one statement for
all (``GROUPED``: ``audit_append`` per organization, each setting its own tenant, so row-level security checks every
row as it checks the request's own), one WAL flush for all. Nothing waits on a timer: a row that finds fewer than
``in_flight`` commits under way starts one at once (PostgreSQL's own group commit then shares their WAL flushes);
otherwise it goes with the next commit a finishing one starts.

Writes (POST, PATCH, PUT, DELETE, GraphQL mutations, imports) keep their audit row in their own transaction
(``AuditTrail.flush``): there the row must commit together with what it describes.
"""

from __future__ import annotations

import asyncio
import weakref
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import driver_connection

log = structlog.get_logger("service.audit")

IN_FLIGHT = 1  # commits under way at once, per engine (each on a pool connection of its own): bench/audit_commit.py
# The rows of several organizations in one statement, its own transaction (autocommit): ``audit_append`` (migration
# 0016) for each organization, with its rows as one JSON array; prepared once per connection. The arrays are sent as
# text (a jsonb[] parameter would have asyncpg introspect its type on every new connection).
GROUPED = "SELECT audit_append(o, CAST(r AS jsonb)) FROM unnest(CAST($1 AS uuid[]), CAST($2 AS text[])) AS x(o, r)"


class GroupCommit:
    """One per engine (``for_engine``): the rows waiting, and the commit in flight."""

    def __init__(self, engine: AsyncEngine, in_flight: int = IN_FLIGHT) -> None:
        self.engine = engine
        self.in_flight = in_flight
        self.pending: list[tuple[UUID, str, asyncio.Future[None]]] = []
        self.drains: set[asyncio.Task[None]] = set()
        self.commits = 0  # how many transactions wrote rows (tests and the bench read it)

    async def write(self, org_id: UUID, rows: str) -> None:
        """Commit ``rows`` (a JSON array of the audit INSERT's rows, all of ``org_id``) durably; return after."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((org_id, rows, done))
        # A drain that found nothing left is done() in the same step of the loop: no row waits on a finished one.
        self.drains = {d for d in self.drains if not d.done()}
        if len(self.drains) < self.in_flight:
            self.drains.add(asyncio.create_task(self._drain()))
        await done  # a cancelled request stops waiting; its row is still written with the others

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await self._commit(batch)
            except BaseException as exc:
                log.exception("audit_group_commit_failed", rows=len(batch))
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def _commit(self, batch: list[tuple[UUID, str, asyncio.Future[None]]]) -> None:
        by_org: dict[UUID, list[str]] = {}
        for org_id, rows, _ in batch:
            by_org.setdefault(org_id, []).append(rows[1:-1])  # the array's elements, without its brackets
        arrays = ["[" + ",".join(elements) + "]" for elements in by_org.values()]
        async with driver_connection(self.engine) as (_, raw):
            await raw.execute(GROUPED, list(by_org), arrays)
        self.commits += 1


_BY_ENGINE: weakref.WeakKeyDictionary[AsyncEngine, GroupCommit] = weakref.WeakKeyDictionary()


def for_engine(engine: AsyncEngine) -> GroupCommit:
    found = _BY_ENGINE.get(engine)
    if found is None:
        found = _BY_ENGINE[engine] = GroupCommit(engine)
    return found
