"""The unit of work: one transaction per request (REST) or GraphQL operation (a query; each mutation field), bound
to the principal's organization and patient (the row-level security keys), whose audit row is written in the same
transaction just before it commits, so what was read or written and its audit row commit together.

Every unit of work checks that the principal's token is not revoked (``Principal.revocation``): from memory when
this process's revocation listener knows it is not (``service.auth.revocations``), else in the transaction's first
statement (``token_revoked()`` beside the tenant's ``set_config``, no extra round trip). There is no way to open
one without that check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.audit import service as audit
from service.auth.principal import Principal
from service.auth.revocations import Key, Revocations
from service.db import (
    PinnedConnection,
    PinnedTenants,
    TenantMismatch,
    driver_transaction,
    tenant_transaction,
    write_transaction,
)

T = TypeVar("T")


def _to_check(who: Principal, revocations: Revocations) -> tuple[Key | None, int]:
    """The revocation key to ask the database about (None: known not revoked, or nothing to revoke), and the
    listener's generation before asking (``Revocations.remember``)."""
    key = who.revocation
    return (None if revocations.known_good(key) else key), revocations.generation


@asynccontextmanager
async def unit_of_work(engine: AsyncEngine, who: Principal, revocations: Revocations) -> AsyncIterator[AsyncConnection]:
    """``db.tenant_transaction`` with the revocation check; a write the database refuses is a ``WriteRefused``;
    the audit trail flushed before COMMIT."""
    key, generation = _to_check(who, revocations)
    async with tenant_transaction(engine, who.org_id, who.patient_id, key) as conn:
        if key is not None:
            revocations.remember(key, generation)
        yield conn
        await audit.flush(conn, who)


@asynccontextmanager
async def driver_unit_of_work(engine: AsyncEngine, who: Principal,
                              revocations: Revocations) -> AsyncIterator[AsyncConnection]:
    """The same for a read on the asyncpg connection itself (``db.driver_transaction``), for work whose every
    statement goes through ``db.driver`` (compiled reads): BEGIN and the tenant in one round trip, COMMIT in
    another. Its audit rows are committed once the read's transaction has, and before the caller can answer: the
    rows the trail holds by the group commit (``audit.commits``; a read changes nothing, so they need not share its
    transaction, only precede the response), and rows a statement of the read wrote itself (a compiled GraphQL
    query, ``AuditTrail.in_transaction``) with the read; if the read did not commit, such rows did not either and
    nothing of it may be answered. Not for writes."""
    key, generation = _to_check(who, revocations)
    committed = False

    def done() -> None:
        nonlocal committed
        committed = True

    trail = audit.current()
    try:
        async with driver_transaction(engine, who.org_id, who.patient_id, key, after_commit=done) as conn:
            if key is not None:
                revocations.remember(key, generation)
            yield conn
    except BaseException:
        if trail is not None:
            trail.in_transaction = False  # rows written in it were rolled back with it
        raise
    if trail is None:
        return
    if not committed:
        if trail.in_transaction:
            raise RuntimeError("the read's audit rows did not commit")
        return
    await audit.commit_grouped(engine, trail, who)


@asynccontextmanager
async def write_unit_of_work(engine: AsyncEngine, who: Principal,
                             revocations: Revocations) -> AsyncIterator[AsyncConnection]:
    """``unit_of_work`` in two round trips fewer (``db.write_transaction``): BEGIN and the tenant in one, the audit
    trail's INSERT and COMMIT in one, so the write and its audit row still commit together or not at all. For a
    write whose work opens no savepoint (the measurement batch)."""
    key, generation = _to_check(who, revocations)
    async with write_transaction(engine, who.org_id, who.patient_id, key,
                                 closing=lambda: audit.closing(who), after_commit=audit.committed) as conn:
        if key is not None:
            revocations.remember(key, generation)
        yield conn


def pinned_for(pinned: PinnedTenants | None, who: Principal, revocations: Revocations) -> PinnedTenants | None:
    """The pinned connections, when this principal's read may use them (``pinned_read``): they are on, and its token
    is known not to be revoked (no statement on them checks revocation); else None, and the read opens a
    transaction (``driver_unit_of_work``)."""
    return pinned if pinned is not None and revocations.known_good(who.revocation) else None


async def read_in_one(engine: AsyncEngine, pinned: PinnedTenants | None, who: Principal, revocations: Revocations,
                      body: Callable[[AsyncConnection | PinnedConnection], Awaitable[T]]) -> T:
    """A read whose every statement gates itself on the tenant (``repository.tenant_guard``), in as few round trips
    as its guarantees allow: on a pinned connection when ``pinned_for`` allows it (``pinned_read``: one round trip),
    else in ``driver_unit_of_work`` (BEGIN with the tenant and the revocation check, the read, COMMIT). Either way
    its audit rows are committed before the caller answers. ``pinned``: None to always open a transaction."""
    chosen = pinned_for(pinned, who, revocations)
    if chosen is not None:
        return await pinned_read(engine, chosen, who, body)
    async with driver_unit_of_work(engine, who, revocations) as conn:
        return await body(conn)


async def pinned_read(engine: AsyncEngine, pinned: PinnedTenants, who: Principal,
                      body: Callable[[PinnedConnection], Awaitable[T]]) -> T:
    """A read in one round trip, on a connection whose session holds the principal's tenant (``db.PinnedTenants``):
    no transaction of its own, so only for a token known not to be revoked (the caller asks ``pinned_for``; there is
    no statement here to check it in) and for a ``body`` whose statements gate themselves on the tenant
    (``repository.tenant_guard``; ``TenantMismatch`` when the session held another: the connection's tenant is
    forgotten, so set again, and the body asked again). Each statement (``PinnedTenants.lane``: a connection taken for
    that statement alone, or a statement shared with other reads by id) commits on its own: the audit rows a statement
    wrote committed with its read; any the trail still holds are committed by the group commit before the caller
    answers, as ``driver_unit_of_work`` does."""
    for _ in range(2):
        conn = pinned.lane(who.org_id, who.patient_id)
        try:
            result = await body(conn)
        except TenantMismatch:
            pinned.forget(conn.used)
            continue
        trail = audit.current()
        if trail is not None:
            await audit.commit_grouped(engine, trail, who)
        return result
    raise RuntimeError("a pinned connection did not take its tenant")
