"""Engines, the per-request unit of work and the tenant settings that row-level security keys on."""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, overload
from uuid import UUID, uuid4

import asyncpg
import orjson
import structlog
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection

from service.api.http import dumps
from service.errors import WriteRefused
from service.settings import Settings
from service.telemetry import metrics

log = structlog.get_logger("service.db")
INSUFFICIENT_PRIVILEGE = "42501"  # SQLSTATE of a row-level security violation (and of a missing privilege)

TENANT_SQL = text(
    "SELECT set_config('app.org_id', :org, true), set_config('app.patient_id', :patient, true), "
    "token_revoked(:jti, :app, :grant)"
)
# Without a token to check (known not revoked, or none): the tenant only.
TENANT_ONLY_SQL = text("SELECT set_config('app.org_id', :org, true), set_config('app.patient_id', :patient, true)")
# The same statement as the driver receives it (SQLAlchemy renders TENANT_SQL to exactly this text).
TENANT_SQL_DRIVER = (
    "SELECT set_config('app.org_id', $1, true), set_config('app.patient_id', $2, true), token_revoked($3, $4, $5)"
)
# A pinned connection's tenant, for the whole session (``PinnedTenants``).
SESSION_TENANT_SQL = "SELECT set_config('app.org_id', $1, false), set_config('app.patient_id', $2, false)"
# A pinned connection's other session settings. Its statements are reads in one statement, sent again and again in
# the same few shapes (a record by id with its lists; a GraphQL query of one root field); with PostgreSQL's default
# plan cache mode it plans a compiled dashboard query afresh on every execution (about 1 ms: a custom plan keeps
# looking cheaper than the generic one), which was a fifth of its CPU per dashboard (bench/JOURNAL.md, sixth
# round). The generic plan is built once per connection and statement.
PINNED_SESSION_SETTINGS = {"plan_cache_mode": "force_generic_plan"}


def server_settings(settings: Settings, session: dict[str, str] | None = None, *,
                    application_name: str = "strengths-api") -> dict[str, str]:
    """The session settings every connection of the service starts with (``make_engine``; the bench's raw asyncpg
    twins connect with them too), and ``session``'s beside them."""
    return {
        "application_name": application_name,
        "statement_timeout": str(settings.statement_timeout_ms),
        "idle_in_transaction_session_timeout": "60000",
        "timezone": "UTC",
        **(session or {}),
    }


def make_engine(url: str, settings: Settings, *, set_role: str | None = None, pool: bool = True,
                pool_size: int | None = None, max_overflow: int | None = None,
                session: dict[str, str] | None = None) -> AsyncEngine:
    """An engine whose connections act as the service role; ``session``: more settings for their sessions.

    With a single owner URL, each new connection switches to the service role with SET ROLE, so the
    service never acts as the owner of the tables (and row-level security applies).
    """
    kwargs: dict[str, Any] = {
        "json_serializer": lambda obj: dumps(obj).decode(),
        "json_deserializer": orjson.loads,
        "connect_args": {"server_settings": server_settings(settings, session)},
    }
    if settings.db_statement_cache_size is not None:
        # PgBouncer in transaction mode: no cached prepared statements, and names that never collide on a
        # server connection another client used (SQLAlchemy's documented recipe for asyncpg).
        kwargs["connect_args"]["statement_cache_size"] = settings.db_statement_cache_size
        kwargs["connect_args"]["prepared_statement_cache_size"] = settings.db_statement_cache_size
        if settings.db_statement_cache_size == 0:
            kwargs["connect_args"]["prepared_statement_name_func"] = lambda: f"__asyncpg_{uuid4().hex}__"
    if pool:
        kwargs.update(pool_size=settings.db_pool_size if pool_size is None else pool_size,
                      max_overflow=settings.db_max_overflow if max_overflow is None else max_overflow,
                      pool_pre_ping=False)
    engine = create_async_engine(url, echo=settings.log_sql, **kwargs)
    if set_role:
        role = set_role

        @event.listens_for(engine.sync_engine, "connect")
        def _set_role(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute(f'SET ROLE "{role}"')
            cursor.close()

    return engine


Token = tuple[str, str, str]  # (jti, client_id, grant_id or ""): TokenService.revocation_key


async def set_tenant(
    conn: AsyncConnection, org_id: UUID | None, patient_id: UUID | None, token: Token | None = None
) -> None:
    """Bind the transaction to one organization (and patient): the row-level security key.

    Given the request's access token as (jti, client_id, grant_id), the same statement checks that the token
    is not revoked, nor its app disabled, nor (for a patient app's token) its app-link grant or that grant's
    link revoked (index lookups in ``token_revoked()``, no extra round trip), and refuses it if so.
    """
    params = _tenant_params(org_id, patient_id, token)
    if token is None:
        await conn.execute(TENANT_ONLY_SQL, {"org": params["org"], "patient": params["patient"]})
        return
    row = (await conn.execute(TENANT_SQL, params)).one()
    if row[2]:
        _revoked()


def _tenant_params(org_id: UUID | None, patient_id: UUID | None, token: Token | None) -> dict[str, str]:
    return {
        "org": str(org_id) if org_id else "", "patient": str(patient_id) if patient_id else "",
        "jti": token[0] if token else "", "app": token[1] if token else "", "grant": token[2] if token else "",
    }


def tenant_literal(value: UUID | None) -> str:
    """A tenant key as a SQL literal for a simple query: ``str(UUID)`` holds only hex digits and dashes ('' for
    none)."""
    return f"'{UUID(str(value))}'" if value else "''"


def begin_script(org_id: UUID | None, patient_id: UUID | None) -> str:
    """``BEGIN`` and the tenant in one simple-query round trip (no parameters: see ``tenant_literal``)."""
    return (f"BEGIN; SELECT set_config('app.org_id', {tenant_literal(org_id)}, true), "
            f"set_config('app.patient_id', {tenant_literal(patient_id)}, true);")


def literal(value: str) -> str:
    """``value`` as a dollar-quoted SQL literal whose tag does not occur in it: no escaping, whatever the server's
    ``standard_conforming_strings``; refused if it holds a NUL (PostgreSQL text cannot)."""
    if "\x00" in value:
        raise ValueError("a SQL literal cannot hold NUL")
    tag = "$l$"
    while tag in value:
        tag = f"$l{uuid4().hex[:8]}$"
    return f"{tag}{value}{tag}"


def _revoked() -> None:
    from service.errors import Unauthenticated

    raise Unauthenticated("The token has been revoked (or its app disabled, or its app link revoked)")


def refusal(exc: BaseException) -> WriteRefused | None:
    """The domain error for a database error that is the database refusing the write (row-level security, or
    a privilege the service role lacks), else None: such a refusal is a 403 like any other, never a 500."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(exc, "sqlstate", None)
    if sqlstate != INSUFFICIENT_PRIVILEGE:
        return None
    log.warning("write_refused_by_database", error=str(orig or exc)[:300])  # the table and policy, for operators
    return WriteRefused("The write is outside the records this token may change")


@contextmanager
def refusals() -> Iterator[None]:
    """Raise ``refusal(exc)`` for a database error that is one (the transaction is already rolled back or
    must be: a statement failed in it)."""
    try:
        yield
    except (DBAPIError, asyncpg.PostgresError) as exc:
        refused = refusal(exc)
        if refused is None:
            raise
        raise refused from exc


@asynccontextmanager
async def tenant_transaction(
    engine: AsyncEngine, org_id: UUID | None, patient_id: UUID | None = None, token: Token | None = None
) -> AsyncIterator[AsyncConnection]:
    """A transaction bound to the tenant (see ``set_tenant``); a write the database refuses is a ``WriteRefused``."""
    with refusals():
        async with engine.begin() as conn:
            await set_tenant(conn, org_id, patient_id, token)
            yield conn


@overload
async def driver(conn: AsyncConnection) -> asyncpg.Connection: ...
@overload
async def driver(conn: PinnedConnection) -> PinnedConnection: ...
@overload
async def driver(conn: AsyncConnection | PinnedConnection) -> asyncpg.Connection | PinnedConnection: ...


async def driver(conn: AsyncConnection | PinnedConnection) -> asyncpg.Connection | PinnedConnection:
    """The asyncpg connection under ``conn``, inside the same transaction (already begun: the tenant is set); a
    pinned connection as it is (its ``fetch`` and ``fetchrow`` are asyncpg's, on a connection holding its tenant).

    For a hot read whose rows go straight to JSON: asyncpg's records without SQLAlchemy's result layer.
    The statement runs on the same connection, in the same transaction, as the same role with the same
    tenant settings, so row-level security applies to it exactly as to every other statement.
    """
    if isinstance(conn, PinnedConnection):
        return conn
    sync = conn.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        live = sync.connection.driver_connection  # a live connection: plain attributes, no I/O
    else:
        live = (await conn.get_raw_connection()).driver_connection  # may revalidate (I/O): in SQLAlchemy's greenlet
    assert isinstance(live, asyncpg.Connection), "an open connection of the asyncpg dialect"
    return live


@asynccontextmanager
async def driver_transaction(
    engine: AsyncEngine, org_id: UUID | None, patient_id: UUID | None, token: Token | None = None,
    after_commit: Callable[[], None] | None = None,
) -> AsyncIterator[AsyncConnection]:
    """``engine.begin()`` + ``set_tenant`` with the transaction run on the asyncpg connection itself.

    The same work reaches PostgreSQL in fewer round trips: ``BEGIN;`` and the tenant ``set_config`` as one simple
    query (with the revocation check, when the token is not known good, as the extended statement after it), then
    the body's statements, then ``COMMIT;``. ``after_commit`` is called once the COMMIT committed: not when a
    statement of the body failed and was answered (PostgreSQL then answers the COMMIT with ROLLBACK). Same pool,
    same role, same isolation and row-level security as ``engine.begin()``; what is skipped is SQLAlchemy's
    transaction and execution layers (greenlets, statement cache keys, result objects).

    Only for code that sends every statement through ``driver(conn)`` (``CompiledRead``, compiled GraphQL reads):
    SQLAlchemy does not know of this transaction, so a ``conn.execute`` inside it fails loudly (asyncpg
    refuses to nest its own transaction in a manually started one) rather than running outside it.
    """
    async with driver_connection(engine) as (conn, raw):
        await _begin(raw, org_id, patient_id, token)
        yield conn
        if await raw.execute("COMMIT;") == "ROLLBACK":
            return  # a statement of the body failed and was answered: nothing committed
        if after_commit is not None:
            after_commit()


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[tuple[AsyncConnection, asyncpg.Connection]]:
    """A connection of the pool and the asyncpg connection under it (``driver``), for statements sent on the driver
    itself; one that fails under them goes through ``end_failed`` (rolled back, or invalidated when its state is
    unknown). Begins nothing: a statement sent alone is its own transaction."""
    async with engine.connect() as conn:
        raw = await driver(conn)
        try:
            yield conn, raw
        except BaseException:
            await end_failed(conn, raw)
            raise


async def _begin(raw: asyncpg.Connection, org_id: UUID | None, patient_id: UUID | None, token: Token | None) -> None:
    """``BEGIN`` and the tenant (``begin_script``), with the revocation check when there is a token to check."""
    if token is None:
        await raw.execute(begin_script(org_id, patient_id))
        return
    await raw.execute("BEGIN;")
    row = await raw.fetchrow(TENANT_SQL_DRIVER, *_tenant_params(org_id, patient_id, token).values())
    assert row is not None, "a SELECT without FROM returns its one row"
    if row[2]:
        _revoked()


@asynccontextmanager
async def write_transaction(
    engine: AsyncEngine, org_id: UUID | None, patient_id: UUID | None, token: Token | None = None, *,
    closing: Callable[[], str | None], after_commit: Callable[[], None],
) -> AsyncIterator[AsyncConnection]:
    """``tenant_transaction`` in fewer round trips, for a write: ``BEGIN;`` and the tenant as one simple query (as
    ``driver_transaction`` sends them), the body's statements, then ``closing()`` (simple-query text: the audit
    trail's INSERT, its values as literals) and ``COMMIT;`` in one simple query, so they commit together or not at
    all. ``after_commit`` is called once they committed; a write the database refuses is a ``WriteRefused``.

    Unlike ``driver_transaction``, statements through SQLAlchemy (``conn.execute``) run too: the connection is
    given SQLAlchemy's ``AUTOCOMMIT`` isolation level, so SQLAlchemy sends no BEGIN or COMMIT of its own and each
    of its statements runs in the transaction this function began on the same connection (same role, tenant
    settings and row-level security). Not for code that opens savepoints (``begin_nested``).

    When a statement of the body failed and the route answered anyway, the transaction is aborted: ``closing()``
    is refused with it and nothing commits, as ``tenant_transaction``'s COMMIT would then answer ROLLBACK.
    """
    with refusals():
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = await driver(conn)
            try:
                await _begin(raw, org_id, patient_id, token)
                yield conn
                script = closing()
                try:
                    status = await raw.execute(f"{script};\nCOMMIT;" if script else "COMMIT;")
                except asyncpg.InFailedSQLTransactionError:
                    await raw.execute("ROLLBACK;")  # a statement of the body failed and was answered
                    return
                if status != "ROLLBACK":
                    after_commit()
            except BaseException:
                await end_failed(conn, raw)
                raise


class TenantMismatch(Exception):  # noqa: N818 - a signal to the caller, not an error to report
    """A statement found the session's tenant (``app_org()``, ``app_patient()``) other than its own principal's, and
    answered nothing (``tenant_guard``): the caller sets the tenant and asks again."""


class PinnedTenants:
    """Connections of their own whose session keeps the tenant of the last request it served, so that a read whose
    statement carries its own guard runs in one round trip: no BEGIN, no tenant statement, no COMMIT.

    Every other unit of work binds the tenant to its transaction (``set_config(..., true)``), so a connection outside
    a transaction has none and row-level security shows it nothing. These connections are the exception, and only
    this class uses them (their own engine, ``make_engine`` with the same settings, role and pool kind):

    - ``taken`` lends one for a statement, with the request's organization and patient set for the session
      (``SESSION_TENANT_SQL``) when it does not already hold them, as far as this process knows (``_tenant``,
      forgotten with the connection); a read's statements go through ``lane`` (``PinnedConnection``);
    - what this process knows is not trusted: every statement sent on one compares the session's tenant with its
      principal's (``tenant_guard``) and reads and writes nothing otherwise, and its caller raises
      ``TenantMismatch``, which makes the read have the connection's tenant forgotten (``forget``), and ask again;
    - each statement runs and commits on its own (autocommit): one whose audit rows are written by the statement
      itself (a data-modifying CTE) reads and records in one transaction, durable as any other commit;
    - reads by ids of the same statement, arguments and tenant that wait together share one statement
      (``coalesced``): at most ``in_flight`` (``DB_COALESCED_IN_FLIGHT``) such statements of one tenant and shape
      are under way at once, so that under load the reads that arrive meanwhile go together in the next one (and
      its commit, the reads' audit rows being written by it), while other tenants' and shapes' reads do not wait
      behind them; each read picks its own record's row out of the statement's. The statement runs in the first
      read's trace; with tracing on, each other read's trace gets a span of the statement too, linked to the first
      (``trace_shared``).

    Off (None from ``from_settings``) with ``DB_PINNED_POOL_SIZE=0``, or behind PgBouncer in transaction mode
    (``DB_STATEMENT_CACHE_SIZE`` set), where a session's settings would stay on a server connection that other
    clients are then given.
    """

    def __init__(self, engine: AsyncEngine, in_flight: int) -> None:
        self.engine = engine
        self._tenant: weakref.WeakKeyDictionary[asyncpg.Connection, tuple[str, str]] = weakref.WeakKeyDictionary()
        # Connections the pool invalidated and has not opened again yet (its events): while there is one, an idle
        # connection may need opening, which ``_idle`` leaves to ``raw_connection``.
        self._to_reopen = 0
        event.listen(engine.sync_engine, "invalidate", self._invalidated)
        event.listen(engine.sync_engine, "soft_invalidate", self._invalidated)
        event.listen(engine.sync_engine, "connect", self._opened)
        # Reads by ids waiting to share a statement (``coalesced``), by statement, arguments and tenant, in order.
        self.in_flight = in_flight
        self._waiting: dict[tuple[str, tuple[str, str], tuple[Any, ...], tuple[int, ...]],
                            list[tuple[tuple[Any, ...], asyncio.Future[Any], contextvars.Context]]] = {}
        self._scheduled = False
        self._running: dict[tuple[str, tuple[str, str], tuple[Any, ...], tuple[int, ...]], int] = {}  # by key
        self._tasks: set[asyncio.Task[None]] = set()
        # Set when tracing is on (``telemetry.tracing.Tracing.shared_statements``): around a statement shared by
        # several reads, given it and the contexts of the reads other than the first, in whose trace it runs.
        self.trace_shared: Callable[[str, list[contextvars.Context]], AbstractContextManager[None]] | None = None

    def _invalidated(self, *_: Any) -> None:
        self._to_reopen += 1

    def _opened(self, *_: Any) -> None:
        self._to_reopen = max(0, self._to_reopen - 1)

    @classmethod
    def from_settings(cls, settings: Settings, *, set_role: str | None) -> PinnedTenants | None:
        if not settings.database_url or settings.db_pinned_pool_size <= 0 \
                or settings.db_statement_cache_size is not None:
            return None
        # No overflow: a connection opened for a burst and closed after it would take the tenant, and prepare its
        # statements, for one read; a read waits for one of the kept connections instead (one round trip each).
        return cls(make_engine(settings.database_url, settings, set_role=set_role,
                               pool_size=settings.db_pinned_pool_size, max_overflow=0,
                               session=PINNED_SESSION_SETTINGS), settings.db_coalesced_in_flight)

    def _idle(self) -> PoolProxiedConnection | None:
        """An idle connection of the pool taken without a greenlet, or None (take one with ``raw_connection``).

        ``AsyncEngine.raw_connection`` runs the pool's checkout in a new greenlet (``greenlet_spawn``), in case it has
        to connect or wait: on a read's call stack that cost more than the checkout itself (bench/README.md,
        thirteenth round). Taking a connection the pool holds valid and idle is no I/O, so the synchronous checkout
        does it, with the same events. While an invalidated connection waits to be opened again (``_to_reopen``),
        the caller takes one the usual way, which opens it. Should an idle one need opening all the same (a pool
        invalidated as a whole, by the time of a disconnect SQLAlchemy saw; this engine runs no statement of its
        own), SQLAlchemy refuses the I/O outside a greenlet (``MissingGreenlet``) and returns it to the pool, and
        the caller again takes one the usual way."""
        sync_engine = self.engine.sync_engine
        if self._to_reopen or not sync_engine.pool.checkedin():  # type: ignore[attr-defined]  # QueuePool's count
            return None
        try:
            return sync_engine.raw_connection()
        except MissingGreenlet:
            return None

    def lane(self, org_id: UUID | None, patient_id: UUID | None) -> PinnedConnection:
        """What a read's statements run on (``PinnedConnection``), for this tenant."""
        params = _tenant_params(org_id, patient_id, None)
        return PinnedConnection(self.engine.dialect, self, (params["org"], params["patient"]))

    @asynccontextmanager
    async def taken(self, tenant: tuple[str, str]) -> AsyncIterator[asyncpg.Connection]:
        """A connection whose session holds this tenant (as far as this process knows), for one statement. The pool's
        own DBAPI connection (``raw_connection``: no SQLAlchemy ``Connection`` around it, none of its statements
        needed; an idle one without a greenlet, ``_idle``); one left closed or broken by the statement is
        invalidated, so the pool discards it."""
        pooled = self._idle() or await self.engine.raw_connection()
        try:
            raw = pooled.driver_connection
            assert isinstance(raw, asyncpg.Connection), "an open connection of the asyncpg dialect"
            if self._tenant.get(raw) != tenant:
                self._tenant.pop(raw, None)
                await raw.fetchrow(SESSION_TENANT_SQL, *tenant)
                self._tenant[raw] = tenant
            try:
                yield raw
            except BaseException:
                if raw.is_closed():
                    pooled.invalidate()
                raise
        finally:
            pooled.close()  # back to the pool: no transaction was begun, so nothing to roll back

    def forget(self, raw: asyncpg.Connection | None) -> None:
        """A statement found the session's tenant other than this process thought (``TenantMismatch``): the next
        statement on that connection sets it first."""
        if raw is not None:
            self._tenant.pop(raw, None)

    async def coalesced(self, tenant: tuple[str, str], sql: str, args: tuple[Any, ...], at: tuple[int, ...],
                        item: tuple[Any, ...]) -> tuple[list[asyncpg.Record], asyncpg.Connection]:
        """The rows of ``sql`` (its arguments ``args``, those at the positions ``at`` arrays with an element per read:
        records' ids, and their reads' audit values), run for ``item`` (this read's element of each) and for every
        other read of the same statement, arguments and tenant waiting with it, in order: those asked for in the
        same turn of the event loop, and those asked for while ``in_flight`` statements of theirs are already under
        way, up to ``MAX_COALESCED`` items a statement. Each read gets the whole statement's rows
        (its own are those of its item) and the connection it ran on. A read that is cancelled while it waits
        leaves the others' statement alone; one whose statement fails gets its error, and one whose statement is
        cancelled (the process exiting) is cancelled too."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[asyncpg.Record], asyncpg.Connection]] = loop.create_future()
        key = (sql, tenant, args, at)
        waiting = self._waiting.get(key)
        if waiting is None:
            self._waiting[key] = waiting = []
        waiting.append((item, future, contextvars.copy_context()))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        """Start a statement for the reads of each statement, arguments and tenant waiting (those waiting longest
        first), while fewer than ``in_flight`` of theirs are under way."""
        self._scheduled = False
        loop = asyncio.get_running_loop()
        for key in list(self._waiting):
            while key in self._waiting and self._running.get(key, 0) < self.in_flight:
                waiting = self._waiting.pop(key)
                if len(waiting) > MAX_COALESCED:
                    self._waiting[key] = waiting[MAX_COALESCED:]  # for the next statement
                    waiting = waiting[:MAX_COALESCED]
                batch = [read for read in waiting if not read[1].done()]  # done: cancelled
                if batch:
                    self._start_one(loop, key, batch)

    def _start_one(self, loop: asyncio.AbstractEventLoop,
                   key: tuple[str, tuple[str, str], tuple[Any, ...], tuple[int, ...]],
                   batch: list[tuple[tuple[Any, ...], asyncio.Future[Any], contextvars.Context]]) -> None:
        self._running[key] = self._running.get(key, 0) + 1
        # in the context of the first read waiting (its trace, its request id in a log line), a copy of it
        task = loop.create_task(self._run(key, batch), context=batch[0][2])
        self._tasks.add(task)  # held until done (the loop keeps only weak references to tasks)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: tuple[str, tuple[str, str], tuple[Any, ...], tuple[int, ...]],
                   batch: list[tuple[tuple[Any, ...], asyncio.Future[Any], contextvars.Context]]) -> None:
        sql, tenant, args, at = key
        traced = self.trace_shared(sql, [context for _, _, context in batch[1:]]) \
            if self.trace_shared is not None and len(batch) > 1 else nullcontext()
        sent = list(args)
        for position, elements in zip(at, zip(*(item for item, _, _ in batch), strict=True), strict=True):
            sent[position] = list(elements)
        try:
            with traced:
                async with self.taken(tenant) as raw:
                    rows = await raw.fetch(sql, *sent)
        except Exception as exc:  # noqa: BLE001 - each read answers its statement's error
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
        except BaseException:  # cancelled, or the process is exiting (SystemExit): so are the reads
            for _, future, _ in batch:
                future.cancel()
            raise
        else:
            metrics.COALESCED_READS.observe(len(batch))
            for _, future, _ in batch:
                if not future.done():
                    future.set_result((rows, raw))
        finally:
            self._running[key] -= 1
            if not self._running[key]:
                del self._running[key]
            if key in self._waiting and not self._scheduled:
                self._start()


# How many reads one statement carries at most (``PinnedTenants.coalesced``).
MAX_COALESCED = 50


@dataclass(slots=True)
class PinnedConnection:
    """What a read runs its statements on when it may use the pinned connections (``uow.pinned_read``), as compiled
    reads take a connection (``CompiledRead.fetch``, ``driver``): each statement is sent on a pinned connection whose
    session holds the read's tenant (``PinnedTenants.taken``), taken for that statement alone, and a read by ids may
    share its statement with other reads (``coalesced``). ``used``: the connection of its last statement (on
    ``TenantMismatch`` the caller has its tenant forgotten)."""

    dialect: Any
    pinned: PinnedTenants
    tenant: tuple[str, str]
    used: asyncpg.Connection | None = None

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pinned.taken(self.tenant) as raw:
            self.used = raw
            return await raw.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.pinned.taken(self.tenant) as raw:
            self.used = raw
            return await raw.fetchrow(sql, *args)

    async def coalesced(self, sql: str, args: tuple[Any, ...], at: tuple[int, ...],
                        item: tuple[Any, ...]) -> list[asyncpg.Record]:
        rows, self.used = await self.pinned.coalesced(self.tenant, sql, args, at, item)
        return rows


async def end_failed(conn: AsyncConnection, raw: Any) -> None:
    """End a failed driver transaction; a connection in an unknown state (closed, or cancelled in the middle of
    a statement) is invalidated, so the pool discards it instead of lending it out again."""
    try:
        if not raw.is_closed():
            if raw.is_in_transaction():
                await raw.execute("ROLLBACK;")
            return
    except Exception:  # noqa: BLE001, S110 - any failure here means the connection cannot be trusted
        pass
    await conn.invalidate()
