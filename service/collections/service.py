"""Use cases shared by every collection: validation of references and rules, writes, versions, events.

Services never commit: the caller's unit of work does. Every write goes through ``record_change``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    ARRAY,
    Row,
    Select,
    Uuid,
    any_,
    bindparam,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import service as audit
from service.auth.principal import Principal
from service.collections import identifiers
from service.collections.declared import check_immutable, returning, snapshot
from service.collections.records import record_change
from service.collections.registry import REGISTRY, Collection, RuleContext, Written, owner
from service.collections.repository import (
    CompiledRead,
    after_row,
    decode_cursor,
    param,
    parse_identifier,
    readable,
    readable_record,
    tenant_ok,
)
from service.collections.types import uuid7
from service.db import PinnedConnection, TenantMismatch
from service.errors import Conflict, Gone, NotFound, PreconditionFailed, ValidationFailed, field_error
from service.models import ExternalId
from service.models.records import RECORD_VERSIONS

INTERNAL = ("org_id", "deleted_at")
# Columns that say how a record is stored, never part of it: where its identifier lives (``identifiers``), and
# whether a measurement's first version is its own row (``models.records.RECORD_VERSIONS``).
STORAGE_ONLY = ("compartment", "first_version_by")
MAX_INCLUDE = 500


def serialize(coll: Collection, row: Any, *, with_deleted: bool = False) -> dict[str, Any]:
    data = dict(row._mapping) if isinstance(row, Row) else dict(row)  # a Row, an asyncpg Record or a mapping
    deleted_at = data.pop("deleted_at", None)
    for name in ("org_id", *STORAGE_ONLY):
        data.pop(name, None)
    external_ids = data.pop("external_ids", None)
    if coll.ext_field in coll.out_fields:  # measurements have a single (source, external_id) instead
        data[coll.ext_field] = external_ids or []
    if coll.to_out:
        data = coll.to_out(data)
    audit.seen(coll.resource, data.get("id"), data.get(coll.owner_column))
    if with_deleted:
        data["deleted_at"] = deleted_at
    return data


# ---------------------------------------------------------------- reads

async def fetch(conn: AsyncConnection, who: Principal, coll: Collection, record_id: UUID,
                *, for_update: bool = False) -> Any:
    """The row, or NotFound (other organization or patient included) or Gone (deleted)."""
    stmt = readable(coll.table, who).where(coll.table.c.id == record_id)
    return await fetch_live(conn, stmt, coll.type_name.replace("_", " "), record_id, for_update=for_update)


async def fetch_live(conn: AsyncConnection, stmt: Select[Any], noun: str, record_id: UUID,
                     *, for_update: bool = False) -> Any:
    """The one row ``stmt`` selects: NotFound when there is none (another organization's included), Gone when
    it is soft-deleted."""
    if for_update:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    must_be_live(noun, record_id, row is not None, row.deleted_at if row is not None else None)
    return row


def must_be_live(noun: str, record_id: Any, found: bool, deleted_at: Any) -> None:
    """NotFound when the read found no record (another organization's included), Gone when it is soft-deleted."""
    if not found:
        raise NotFound(f"No {noun} with id {record_id}")
    if deleted_at is not None:
        raise Gone(f"The {noun} {record_id} was deleted")


class RecordRead:
    """A record by id in one statement, gated on ``tenant_guard``: on a pinned connection whose session holds another
    tenant, it reads nothing and ``read`` raises ``TenantMismatch``. One row: ``ok`` (the guard), then the record's
    columns (all NULL when there is none)."""

    def __init__(self, coll: Collection) -> None:
        self.coll = coll
        self.columns = tuple(readable_record(coll, _TEMPLATE).selected_columns.keys())
        self.statement = CompiledRead(self._build)

    def _build(self, who: Principal) -> Select[Any]:
        coll, table = self.coll, self.coll.table
        guard = tenant_ok(who)
        rec = (readable_record(coll, who)
               .where(table.c.id == param("record_id"), select(guard.c.ok).scalar_subquery()).cte("rec"))
        return (select(guard.c.ok, *(rec.c[name] for name in self.columns))
                .select_from(guard.outerjoin(rec, true())))


_TEMPLATE = Principal(org_id=param("org_id"), app_id="", subject="")


@cache
def _record_read(coll_name: str) -> RecordRead:
    return RecordRead(REGISTRY[coll_name])


async def read(conn: AsyncConnection | PinnedConnection, who: Principal, coll: Collection,
               record_id: UUID) -> dict[str, Any]:
    """The serialized live record, or NotFound / Gone, read by one statement (``RecordRead``) on the caller's
    connection: a unit of work's transaction, or a pinned connection (``TenantMismatch`` when its session holds
    another tenant); what it read is noted in the audit trail, whose rows the caller's unit of work commits. (REST's
    read by id, with its ``?include=`` lists, has PostgreSQL write its JSON: ``service.collections.jsonread``.)"""
    plan = _record_read(coll.name)
    head = (await plan.statement.fetch(conn, who, record_id=record_id))[0]
    if not head["ok"]:
        raise TenantMismatch
    must_be_live(coll.type_name.replace("_", " "), record_id, head["id"] is not None, head["deleted_at"])
    return serialize(coll, {name: head[name] for name in plan.columns})


def list_statement(
    who: Principal, coll: Collection, *, filters: dict[str, Any], cursor: str | None
) -> Select[Any]:
    table = coll.table
    stmt = readable_record(coll, who).where(table.c.deleted_at.is_(None))
    for name, value in filters.items():
        if value is None:
            continue
        if name.endswith("_since"):  # updated_since, and the collection's windows (observed_since): at or after
            stmt = stmt.where(table.c[name.removesuffix("_since") + "_at"] >= value)
        elif name.endswith("_until"):  # before
            stmt = stmt.where(table.c[name.removesuffix("_until") + "_at"] < value)
        elif name == "external_id":  # "system|value", or already split (GraphQL binds the two as parameters)
            system, ident = value if isinstance(value, tuple) else \
                parse_identifier(value, coll.identifier_param)
            if coll.natural_key:  # measurements: source|external_id
                stmt = stmt.where(*(table.c[k] == v for k, v in zip(coll.natural_key, (system, ident), strict=True)))
                continue
            ext = ExternalId.__table__
            stmt = stmt.where(
                table.c.id.in_(
                    select(ext.c.record_id).where(
                        ext.c.org_id == who.org_id, ext.c.collection == coll.name,
                        ext.c.system == system, ext.c.value == ident,
                    )
                )
            )
        else:
            stmt = stmt.where(table.c[name] == value)
    if cursor:
        stmt = stmt.where(after_row(coll, who, decode_cursor(cursor)))
    return stmt.order_by(*coll.list_keys())


async def history(conn: AsyncConnection, who: Principal, coll: Collection, record_id: UUID) -> list[dict[str, Any]]:
    hist = RECORD_VERSIONS
    stmt = readable(hist, who).where(hist.c.collection == coll.name, hist.c.record_id == record_id)
    rows = (await conn.execute(stmt.order_by(hist.c.version))).all()
    if not rows:
        raise NotFound(f"No {coll.type_name.replace('_', ' ')} with id {record_id}")
    audit.seen(coll.resource, record_id, rows[-1].client_id)
    return [
        {"version": r.version, "action": r.action, "changed_at": r.changed_at, "changed_by": r.changed_by,
         "record": r.data}
        for r in rows
    ]


# ---------------------------------------------------------------- writes

async def _load_refs(
    conn: AsyncConnection, who: Principal, coll: Collection, data: dict[str, Any], changed: set[str] | None
) -> dict[str, list[dict[str, Any]]]:
    """Every referenced record must exist, be live, and belong to the same client (else 422)."""
    found: dict[str, dict[Any, dict[str, Any]]] = {}
    for ref in coll.refs:
        wanted = ref.ids(data)
        if wanted:
            rows = await load_live(conn, who, ref.target, wanted)
            found.setdefault(ref.target, {}).update(rows)
    return bind_refs(coll, data, found, changed)


@cache
def _live_among(coll_name: str, columns: tuple[str, ...] | None = None) -> CompiledRead:
    table = REGISTRY[coll_name].table

    def build(who: Principal) -> Select[Any]:
        ids = bindparam("ids", None, type_=ARRAY(Uuid()))
        stmt = readable(table, who).where(table.c.id == any_(ids), table.c.deleted_at.is_(None))
        return stmt.with_only_columns(*(table.c[name] for name in columns)) if columns else stmt

    return CompiledRead(build)


async def load_live(
    conn: AsyncConnection, who: Principal, collection: str, ids: Sequence[Any], columns: tuple[str, ...] | None = None
) -> dict[Any, dict[str, Any]]:
    """The live records of ``collection`` among ``ids`` that ``who`` may read, by id (one statement, compiled
    once: ``readable()`` with the ids as one array); only ``columns`` of them (``id`` among them) when given."""
    rows = await _live_among(collection, columns).fetch(conn, who, ids=list(ids))
    return {r["id"]: dict(r) for r in rows}


async def live_ids(conn: AsyncConnection, who: Principal, collection: str, ids: Sequence[Any]) -> set[Any]:
    """The ids among ``ids`` of live records of ``collection`` that ``who`` may read (one statement)."""
    return {r[0] for r in await _live_among(collection, ("id",)).fetch(conn, who, ids=list(ids))}


def bind_refs(
    coll: Collection, data: dict[str, Any], found: dict[str, dict[Any, dict[str, Any]]], changed: set[str] | None
) -> dict[str, list[dict[str, Any]]]:
    """The referenced records of ``data`` among the live ``found`` ones (by collection, then id); each must
    belong to the record's client, else 422. The one place this rule lives, for single and bulk writes."""
    loaded: dict[str, list[dict[str, Any]]] = {}
    client_id = data.get("client_id")
    for ref in coll.refs:
        wanted = ref.ids(data)
        if not wanted:
            continue
        pool = found.get(ref.target, {})
        # Per wanted id its row, or None where it is missing or another client's: one lookup per id (a batch
        # makes hundreds, and a UUID's hash runs in Python).
        hits = [row if (row := pool.get(i)) is not None and row["client_id"] == client_id else None for i in wanted]
        if None in hits and (changed is None or ref.field.split(".")[0] in changed):
            target = REGISTRY[ref.target]
            errors = [
                field_error(f"{ref.field}.{i}" if ref.many else ref.field,
                            f"No {target.type_name.replace('_', ' ')} {ident} of this client", "reference_not_found")
                for i, (ident, row) in enumerate(zip(wanted, hits, strict=True)) if row is None
            ]
            raise ValidationFailed("A referenced record does not exist for this client", errors=errors)
        loaded[ref.field] = [row for row in hits if row is not None]
    return loaded


def client_missing(client_id: Any) -> ValidationFailed:
    return ValidationFailed.on("client_id", f"No client {client_id}", "reference_not_found")


async def _check_client(conn: AsyncConnection, who: Principal, client_id: UUID) -> None:
    clients = owner().table
    stmt = readable(clients, who).where(clients.c.id == client_id, clients.c.deleted_at.is_(None))
    if (await conn.execute(stmt.with_only_columns(clients.c.id))).first() is None:
        raise client_missing(client_id)


async def _validate(
    conn: AsyncConnection, who: Principal, coll: Collection, data: dict[str, Any],
    current: dict[str, Any] | None, changed: set[str] | None,
) -> RuleContext:
    if coll.client_owned and (current is None):
        await _check_client(conn, who, data["client_id"])
    refs = await _load_refs(conn, who, coll, data, changed)
    return await apply_rules(conn, who, coll, data, refs, current)


async def apply_rules(
    conn: AsyncConnection, who: Principal, coll: Collection, data: dict[str, Any],
    refs: dict[str, list[dict[str, Any]]], current: dict[str, Any] | None,
) -> RuleContext:
    ctx = RuleContext(conn=conn, who=who, data=data, refs=refs, current=current)
    for rule in coll.rules:
        await rule(ctx)
    return ctx


def new_row(
    who: Principal, coll: Collection, payload: dict[str, Any], ctx: RuleContext, new_id: UUID
) -> dict[str, Any]:
    """The column values of a new record from its validated body and what its rules derived."""
    values = {**_row_values(coll, payload), **ctx.extra}
    values.update(org_id=who.org_id, id=new_id, external_ids=payload.get(coll.ext_field) or [])
    if coll.natural_key:
        values["compartment"] = identifiers.compartment(who)
    return values


def _row_values(coll: Collection, payload: dict[str, Any]) -> dict[str, Any]:
    values = dict(payload)
    values.pop(coll.ext_field, None)
    if coll.to_row:
        values = coll.to_row(values)
    return values


async def create(
    conn: AsyncConnection, who: Principal, coll: Collection, body: BaseModel, *, record_id: UUID | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    identifiers.check_identity_create(who, coll)
    payload = body.model_dump()
    if extra:
        payload.update(extra)
    ctx = await _validate(conn, who, coll, payload, None, None)
    ext_ids = payload.get(coll.ext_field) or []
    new_id = record_id or uuid7()
    values = new_row(who, coll, payload, ctx, new_id)
    if await identifiers.natural_key_holder(conn, who, coll, values) is not None:
        raise _natural_key_taken(coll)
    try:
        row = (await conn.execute(returning(coll, insert(coll.table).values(**values)))).one()
    except IntegrityError as exc:  # a unique index of the collection's own (its natural key)
        raise _natural_key_taken(coll) from exc
    if ext_ids:
        client_id = new_id if coll.identity else payload.get("client_id")
        await identifiers.write_external_ids(conn, who, coll, new_id, client_id, ext_ids, replace=False)
    out = serialize(coll, row)
    await record_change(conn, who, coll.name, snapshot(coll, out), "created")
    if coll.after_write:
        await coll.after_write(conn, who, [Written(out)])
    return out


def _natural_key_taken(coll: Collection) -> Conflict:
    names = " and ".join(coll.natural_key) or "identifiers"
    return Conflict(f"The {coll.type_name.replace('_', ' ')}'s {names} already name another one")


def check_if_match(if_match: str | None, version: int) -> None:
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",")]
    if "*" in tags:
        return
    if f'W/"{version}"' not in tags and f'"{version}"' not in tags:
        raise PreconditionFailed(f"The record is at version {version}")


async def patch(
    conn: AsyncConnection, who: Principal, coll: Collection, record_id: UUID, body: BaseModel,
    if_match: str | None,
) -> dict[str, Any]:
    current_row = await fetch(conn, who, coll, record_id, for_update=True)
    check_if_match(if_match, current_row.version)
    return await apply_update(conn, who, coll, current_row, body.model_dump(exclude_unset=True))


async def apply_update(
    conn: AsyncConnection, who: Principal, coll: Collection, current_row: Any, changes: dict[str, Any]
) -> dict[str, Any]:
    current = dict(current_row._mapping)
    if coll.client_owned and "client_id" in changes and changes["client_id"] != current["client_id"]:
        raise ValidationFailed.on("client_id", "A record cannot move to another client", "client_id_immutable")
    check_immutable(coll, current, changes)
    changes = {k: v for k, v in changes.items() if not (v is None and k in coll.immutable)}  # null: as stored
    ext_ids = changes.pop(coll.ext_field, None)
    identifiers.check_identity_update(who, coll, current, ext_ids)
    merged = {**current, **_row_values(coll, changes)}
    ctx = await _validate(conn, who, coll, merged, current, set(changes))
    values = {**_row_values(coll, changes), **ctx.extra}
    values.pop("client_id", None)
    if ext_ids is not None:
        values["external_ids"] = ext_ids
    await _rekey(conn, who, coll, current, values)
    table = coll.table
    stmt = (
        update(table)
        .where(table.c.org_id == who.org_id, table.c.id == current["id"])
        .values(**values, version=table.c.version + 1, updated_at=func.now())
    )
    try:
        row = (await conn.execute(returning(coll, stmt))).one()
    except IntegrityError as exc:  # the new natural key is another record's (in the same compartment)
        raise _natural_key_taken(coll) from exc
    if ext_ids is not None:
        client_id = row.id if coll.identity else row.client_id
        await identifiers.write_external_ids(conn, who, coll, row.id, client_id, ext_ids, replace=True)
    out = serialize(coll, row)
    await record_change(conn, who, coll.name, snapshot(coll, out), "updated")
    if coll.after_write:
        await coll.after_write(conn, who, [Written(out, current)])
    return out


async def _rekey(conn: AsyncConnection, who: Principal, coll: Collection, current: dict[str, Any],
                 values: dict[str, Any]) -> None:
    """A changed natural key moves to the writer's compartment (service.collections.identifiers) and must not
    name another record there or where the client's records see it."""
    if not any(name in values and values[name] != current.get(name) for name in coll.natural_key):
        return
    values["compartment"] = identifiers.compartment(who)
    merged = {**current, **values}
    if await identifiers.natural_key_holder(conn, who, coll, merged, current["id"]) is not None:
        raise _natural_key_taken(coll)


async def delete(
    conn: AsyncConnection, who: Principal, coll: Collection, record_id: UUID, if_match: str | None
) -> None:
    current = await fetch(conn, who, coll, record_id, for_update=True)
    check_if_match(if_match, current.version)
    table = coll.table
    row = (
        await conn.execute(
            update(table)
            .where(table.c.org_id == who.org_id, table.c.id == record_id)
            .values(deleted_at=func.now(), updated_at=func.now(), version=table.c.version + 1)
            .returning(*table.c)
        )
    ).one()
    await record_change(conn, who, coll.name, serialize(coll, row, with_deleted=True), "deleted")


# ---------------------------------------------------------------- sync by external identifier

async def upsert(
    conn: AsyncConnection, who: Principal, coll: Collection, system: str, value: str, body: BaseModel,
    if_match: str | None,
) -> tuple[dict[str, Any], bool]:
    """Create or update the record an external identifier names (FHIR conditional update).

    Exactly one record is ever created for an identifier, however many PUTs race: the identifier is
    claimed by inserting it into a unique index first; a concurrent PUT waits on that index entry and
    then updates the record the winner created. A retired identifier (its record deleted) answers 410.
    Which record an identifier names, and where a new one's lives: service.collections.identifiers.
    """
    payload = body.model_dump()
    if coll.natural_key:
        return await _upsert_by_natural_key(conn, who, coll, system, value, payload, if_match)
    ident = {"system": system, "value": value}
    ext_ids = payload.get(coll.ext_field) or []
    if ident not in ext_ids:
        payload[coll.ext_field] = [*ext_ids, ident]
    client = None if coll.identity else payload.get("client_id")
    if client is not None and who.patient_id is not None:
        await _check_client(conn, who, client)  # before the claim, which names the client
    record_id = await identifiers.lookup(conn, who, coll, client, system, value)
    if record_id is None:
        identifiers.check_identity_create(who, coll)
        new_id = uuid7()
        if await identifiers.claim(conn, who, coll, new_id, new_id if coll.identity else client, system, value,
                                   only_new=True):
            if if_match not in (None, "*"):
                raise PreconditionFailed("No record has this identifier yet")
            return await create(conn, who, coll, _with_identifier(coll, payload), record_id=new_id), True
        record_id = await identifiers.lookup(conn, who, coll, client, system, value)  # a concurrent PUT's
        if record_id is None:  # the claim lost to a holder this writer does not see: no record of its
            raise NotFound(f"No {coll.type_name.replace('_', ' ')} with identifier {system}|{value}")
    current = await fetch(conn, who, coll, record_id, for_update=True)
    check_if_match(if_match, current.version)
    return await apply_update(conn, who, coll, current, payload), False


def _with_identifier(coll: Collection, payload: dict[str, Any]) -> BaseModel:
    try:  # the identifier joins the body's own: it may make the list too long or hold too long a value
        return coll.create.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValidationFailed.on(coll.ext_field, f"With the identifier from the query: {first['msg']}",
                                  "invalid_identifier") from None


async def _upsert_by_natural_key(
    conn: AsyncConnection, who: Principal, coll: Collection, system: str, value: str,
    payload: dict[str, Any], if_match: str | None,
) -> tuple[dict[str, Any], bool]:
    """Measurements are named by (source, external_id), which their own unique index keeps unique."""
    key = dict(zip(coll.natural_key, (system, value), strict=True))
    payload.update(key)
    find = identifiers.natural_key_statement(who, coll, payload.get("client_id"), key)
    for _attempt in range(2):
        row = (await conn.execute(find.with_for_update())).first()
        if row is not None:
            if row.deleted_at is not None:
                raise Gone(f"The {coll.type_name.replace('_', ' ')} {system}|{value} was deleted")
            check_if_match(if_match, row.version)
            return await apply_update(conn, who, coll, row, payload), False
        if if_match not in (None, "*"):
            raise PreconditionFailed("No record has this identifier yet")
        try:
            async with conn.begin_nested():
                return await create(conn, who, coll, coll.create.model_validate(payload)), True
        except Conflict:
            continue  # a concurrent PUT created it first: update that one
    raise Conflict(f"The {coll.type_name.replace('_', ' ')} is being written concurrently; retry")
