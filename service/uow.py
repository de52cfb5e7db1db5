"""The unit of work: one transaction per request (REST) or GraphQL operation (a query; each mutation field), bound
to the principal's organization and patient (the row-level security keys), whose audit row is written in the same
transaction just before it commits, so what was read or written and its audit row commit together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import audit
from service.auth.principal import Principal
from service.db import Token, driver_transaction, tenant_transaction


@asynccontextmanager
async def unit_of_work(engine: AsyncEngine, who: Principal,
                       token: Token | None = None) -> AsyncIterator[AsyncConnection]:
    """``db.tenant_transaction``: the tenant set (and, given the token's revocation key, the revocation check in the
    same statement), a write the database refuses a ``WriteRefused``; the audit trail flushed before COMMIT."""
    async with tenant_transaction(engine, who.org_id, who.patient_id, token) as conn:
        yield conn
        await audit.flush(conn, who)


@asynccontextmanager
async def driver_unit_of_work(engine: AsyncEngine, who: Principal,
                              token: Token | None = None) -> AsyncIterator[AsyncConnection]:
    """The same on the asyncpg connection itself (``db.driver_transaction``): for work whose every statement goes
    through ``db.driver`` (compiled reads, the audit insert)."""
    async with driver_transaction(engine, who.org_id, who.patient_id, token) as conn:
        yield conn
        await audit.flush(conn, who)
