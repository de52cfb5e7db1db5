"""SELECTs, always starting from the principal-aware statement (row-level security enforces the same)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import Field
from sqlalchemy import CTE, ColumnElement, Select, Table, Uuid, and_, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from service.api import cursors
from service.auth.principal import Principal
from service.collections.registry import owner_column
from service.collections.types import storable
from service.db import PinnedConnection, driver
from service.errors import ValidationFailed

if TYPE_CHECKING:
    from service.collections.registry import Collection


def readable(table: Table, who: Principal) -> Select[Any]:
    stmt = select(table).where(table.c.org_id == who.org_id)
    if who.patient_id is not None:
        column = table.c[owner_column(table)]
        stmt = stmt.where(column == who.patient_id)
    return stmt


def tenant_guard(who: Principal) -> ColumnElement[bool]:
    """True when the session's tenant, what row-level security keys on (``app_org()``, ``app_patient()``), is the
    principal's: always inside a unit of work's transaction; on a pinned connection (``db.PinnedTenants``), only when
    the session holds this principal's tenant. A statement run on one gates everything it reads and writes on it."""
    return session_tenant_is(who.org_id, who.patient_id)


def tenant_ok(who: Principal) -> CTE:
    """``tenant_guard`` as the one-row CTE ``tenant_ok (ok)`` a statement joins or filters on: everything it reads is
    gated on ``select(tenant_ok.c.ok).scalar_subquery()``, and it returns ``ok``."""
    return select(tenant_guard(who).label("ok")).cte("tenant_ok")


def session_tenant_is(org: Any, patient: Any) -> ColumnElement[bool]:
    """``tenant_guard`` of an organization and a patient (None: an organization-wide principal), each a value or an
    SQL expression (a statement written as text gates itself on its own parameters: ``sync.changes``)."""
    session_patient = func.app_patient(type_=Uuid)
    return and_(func.app_org(type_=Uuid).is_not_distinct_from(org),
                session_patient.is_(None) if patient is None else session_patient.is_not_distinct_from(patient))


def readable_record(coll: Collection, who: Principal) -> Select[Any]:
    """``readable()`` of the collection's table with its computed fields: what every read of records selects."""
    return readable(coll.table, who).add_columns(*coll.computed_columns())


def after_row(coll: Collection, who: Principal, after_id: UUID | ColumnElement[Any]) -> ColumnElement[bool]:
    """The rows that come after the row ``after_id`` (a cursor's) in the collection's list order: by id, or by
    its declared keys, looked up for that row in the same statement (a row the caller cannot see, or none,
    comes before nothing: an empty page)."""
    table = coll.table
    if coll.order is None:
        return table.c.id > after_id
    prev = table.alias("after_row")
    position = select(*coll.list_keys(prev)).where(prev.c.org_id == who.org_id, prev.c.id == after_id)
    return tuple_(*coll.list_keys()) > position.scalar_subquery()


def param(name: str) -> Any:
    """A named parameter of a ``CompiledRead`` statement, given at execution."""
    return bindparam(name, None)


class CompiledRead:
    """A SELECT built by ``build`` from the principal-aware ``readable()``, compiled once per dialect and
    kind of principal (patient-bound or not), and run on the unit of work's asyncpg connection.

    For hot reads: SQLAlchemy builds, cache-keys and compiles the statement and wraps every row on each
    execution; here that happens once per process. The statement is the one ``readable()`` builds, with the
    organization (and patient) as bound parameters; it runs in the caller's transaction, as the same role,
    with the tenant settings row-level security keys on. Rows are asyncpg records (``r["name"]``).
    """

    def __init__(self, build: Callable[[Principal], Select[Any]]) -> None:
        self.build = build
        self._compiled: dict[tuple[int, bool], tuple[str, tuple[str, ...], Mapping[str, Any]]] = {}

    def _compile(self, dialect: Any, patient: bool) -> tuple[str, tuple[str, ...], Mapping[str, Any]]:
        template = Principal(org_id=param("org_id"), app_id="", subject="",
                             patient_id=param("patient_id") if patient else None)
        compiled = self.build(template).compile(dialect=dialect)
        return compiled.string, tuple(compiled.positiontup or ()), compiled.construct_params()

    def _statement(self, conn: AsyncConnection | PinnedConnection, who: Principal,
                   params: dict[str, Any]) -> tuple[str, tuple[str, ...], list[Any]]:
        key = (id(conn.dialect), who.patient_id is not None)
        entry = self._compiled.get(key)
        if entry is None:
            entry = self._compiled[key] = self._compile(conn.dialect, key[1])
        sql, names, defaults = entry
        values = {**defaults, **params, "org_id": who.org_id, "patient_id": who.patient_id}
        return sql, names, [values[name] for name in names]

    async def fetch(self, conn: AsyncConnection | PinnedConnection, who: Principal, **params: Any) -> list[Any]:
        sql, _, args = self._statement(conn, who, params)
        return await (await driver(conn)).fetch(sql, *args)

    async def fetch_one_of(self, conn: AsyncConnection | PinnedConnection, who: Principal, item: dict[str, Any],
                           **params: Any) -> list[Any]:
        """The rows of a statement over array parameters (``item``'s names: records' ids, and the audit values of the
        reads of them) for one read, ``item`` its element of each: in a transaction the arrays of that read alone; on
        a pinned connection they may carry other reads' elements too (``db.PinnedTenants.coalesced``), whose rows
        the caller leaves aside."""
        sql, names, args = self._statement(conn, who, {**params, **dict.fromkeys(item)})
        at = tuple(names.index(name) for name in item)  # each name once: its every use in the SQL is that one $n
        if isinstance(conn, PinnedConnection):
            return await conn.coalesced(sql, tuple(args), at, tuple(item.values()))
        for position, value in zip(at, item.values(), strict=True):
            args[position] = [value]
        return await (await driver(conn)).fetch(sql, *args)


def encode_cursor(last_id: UUID) -> str:
    return cursors.RECORDS.encode(last_id.bytes)


async def fetch_page(conn: AsyncConnection, stmt: Select[Any], limit: int,
                     cursor_of: Callable[[Any], str]) -> tuple[list[Any], str | None]:
    """Up to ``limit`` rows of the ordered ``stmt`` (one more is read to learn whether others follow), and the
    cursor of the last row returned when they do."""
    rows = (await conn.execute(stmt.limit(limit + 1))).all()
    if len(rows) > limit and limit:
        return rows[:limit], cursor_of(rows[limit - 1])
    return rows[:limit], None


def decode_cursor(cursor: str, field: str = "cursor") -> UUID:
    return UUID(bytes=cursors.RECORDS.decode(cursor, field)[0])


# system|value: a system without "|", a value, no NUL (PostgreSQL text cannot hold it).
IDENTIFIER_PATTERN = r"^[^|\x00]+\|[^\x00]+$"


def identifier_field(*, required: bool = False, description: str = "system|value") -> Any:
    """The ``identifier`` / ``external_id`` query parameter, declared once with its shape, as a field of a query
    parameter model (service.http.QueryParams)."""
    return Field(... if required else None, max_length=1000, description=description,
                 json_schema_extra={"pattern": IDENTIFIER_PATTERN})


def parse_identifier(value: str, field: str = "external_id") -> tuple[str, str]:
    system, sep, ident = value.partition("|")
    if not sep or not system or not ident or not storable(value):
        raise ValidationFailed.on(field, "Expected system|value", "invalid_identifier")
    return system, ident
