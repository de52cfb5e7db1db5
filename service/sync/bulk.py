"""Bulk NDJSON import and export, streaming both ways so memory stays flat however long the file.

Import lines are ``{"type": ..., "resource": ...}``; a reference field may hold an id or
``{"external_id": "system|value"}`` of a record made by an earlier line (or before). Lines are written
in chunks, one transaction each, and each chunk's results are sent only after it commits: nothing
reported as stored can be lost to a dropped connection.

A chunk of new records is written set-based: each line is checked with the collection's own create
model, reference binding and rules (``service.bind_refs`` / ``service.apply_rules``, as a single create),
against the referenced records loaded for the whole chunk in one statement per collection; then one
multi-row INSERT per collection, one for the external identifiers and one ``record_changes`` per
collection (history, change feed, webhook outbox, audit). A chunk that updates existing records (a
re-import) goes line by line through ``service.upsert``; a database-level failure of the set-based
write (a concurrent writer took an identifier, a unique index) runs the chunk again line by line, one
savepoint per line, so good lines still land and bad ones are reported with their line numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service import audit
from service.auth.principal import Principal
from service.auth.rest import needs_any
from service.auth.scopes import required_scope
from service.collections import identifiers, service
from service.collections.declared import snapshot
from service.collections.records import record_changes
from service.collections.registry import REGISTRY, Collection, Written
from service.collections.repository import parse_identifier, readable_record
from service.collections.rest import problems
from service.collections.types import Instant, storable, uuid7
from service.db import driver, refusals, set_tenant
from service.errors import DomainError, Forbidden, UnsupportedMediaType, ValidationFailed
from service.http import QueryParams, StrictRoute, dumps, loads_strict
from service.models.base import Base
from service.problems import validation_problem
from service.sync.changes import readable_types, types_field

router = APIRouter(prefix="/v1/bulk", tags=["Sync"], route_class=StrictRoute)
NDJSON = "application/x-ndjson"
CHUNK_LINES = 500
MAX_LINE = 1_000_000


NDJSON_BODY = {"requestBody": {"required": True, "content": {NDJSON: {"schema": {
    "type": "string", "description": 'One JSON object per line: {"type": "strength", "resource": {...}}'}}}}}
NDJSON_OUT: dict[int | str, dict[str, Any]] = {200: {"description": "One result or record per line",
                    "content": {NDJSON: {"schema": {"type": "string"}}}}}


def _by_type(name: Any) -> Collection:
    for coll in REGISTRY.values():
        if coll.type_name == name:
            return coll
    raise ValidationFailed.on("type", f"Unknown type {name!r}", "unknown_type")


async def _resolve(conn: Any, who: Principal, target: str, value: Any, field: str, client: Any) -> Any:
    """An ``{"external_id": "system|value"}`` reference becomes the id of the record it names (for a record of
    ``client``: service.collections.identifiers)."""
    if not isinstance(value, dict):
        return value
    if set(value) != {"external_id"} or not isinstance(value["external_id"], str):
        raise ValidationFailed.on(field, 'A reference is an id or {"external_id": "system|value"}', "invalid_reference")
    system, ident = parse_identifier(value["external_id"], field)
    coll = REGISTRY[target]
    found = await identifiers.lookup(conn, who, coll, None if coll.identity else _uuid(client), system, ident)
    if found is None:
        raise ValidationFailed.on(field, f"No {target} with identifier {value['external_id']}", "reference_not_found")
    return str(found)


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if value is not None else None
    except ValueError:
        return None


async def _resolve_refs(conn: Any, who: Principal, coll: Collection, resource: dict[str, Any]) -> None:
    for name, target, many in _ref_fields(coll):  # client_id first: the other references are the client's
        if name not in resource:
            continue
        client = resource.get("client_id")
        if many and isinstance(resource[name], list):
            resource[name] = [await _resolve(conn, who, target, v, f"{name}.{i}", client)
                              for i, v in enumerate(resource[name])]
        else:
            resource[name] = await _resolve(conn, who, target, resource[name], name, client)


def _parse_line(who: Principal, raw: bytes) -> tuple[Collection, dict[str, Any]]:
    if len(raw) > MAX_LINE:
        raise ValidationFailed.on("resource", "The line is too long", "line_too_long")
    doc = loads_strict(raw)
    if not isinstance(doc, dict) or set(doc) != {"type", "resource"} or not isinstance(doc["resource"], dict):
        raise ValidationFailed.on("type", 'Each line is {"type": ..., "resource": {...}}', "invalid_line")
    coll = _by_type(doc["type"])
    if not who.allows(coll.resource, "c"):
        raise Forbidden(required_scope(coll.resource, "c", who.context))
    return coll, dict(doc["resource"])


def _ref_fields(coll: Collection) -> list[tuple[str, str, bool]]:
    fields = [("client_id", "clients", False)] if coll.client_owned else []
    return fields + [(r.field, r.target, r.many) for r in coll.refs if "." not in r.field]


async def import_line(conn: Any, who: Principal, raw: bytes) -> dict[str, Any]:
    coll, resource = _parse_line(who, raw)
    await _resolve_refs(conn, who, coll, resource)
    body = coll.create.model_validate(resource)
    identifier = _identifier(coll, body.model_dump())
    if identifier and who.allows(coll.resource, "u"):
        record, created = await service.upsert(conn, who, coll, identifier[0], identifier[1], body, None)
    else:
        record, created = await service.create(conn, who, coll, body), True
    return _result("created" if created else "updated", record)


def _result(status: str, record: dict[str, Any]) -> dict[str, Any]:
    """A line's result; with the safety alert a measurement line opened, as the batch answers it."""
    result = {"status": status, "id": record["id"]}
    if record.get("safety_alert"):
        result["safety_alert"] = record["safety_alert"]
    return result


def _identifier(coll: Collection, payload: dict[str, Any]) -> tuple[str, str] | None:
    if coll.natural_key:
        system, ident = (payload.get(name) for name in coll.natural_key)  # (system, value): upsert's pair
        return (system, ident) if system and ident else None
    ids = payload.get(coll.ext_field) or []
    return (ids[0]["system"], ids[0]["value"]) if ids else None


async def _lines(request: Request) -> AsyncIterator[tuple[int, bytes]]:
    buffer = b""
    number = 0
    async for chunk in request.stream():
        buffer += chunk
        if b"\n" in chunk:
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                number += 1
                if line.strip():
                    yield number, line
        if len(buffer) > MAX_LINE:
            number += 1
            yield number, buffer
            buffer = b""
    if buffer.strip():
        yield number + 1, buffer


class _RetryCarefully(Exception):
    pass


class _LineByLine(Exception):
    """The chunk updates existing records: it goes line by line through the upsert."""


_FK_ORDER = {t.name: i for i, t in enumerate(Base.metadata.sorted_tables)}  # referenced tables first

_KNOWN_IDS = text(
    "SELECT e.collection, e.system, e.value, e.record_id, e.compartment FROM external_ids e "
    "JOIN unnest(CAST(:collections AS text[]), CAST(:systems AS text[]), CAST(:vals AS text[])) AS k(c, s, v) "
    "ON e.collection = k.c AND e.system = k.s AND e.value = k.v WHERE e.org_id = :org"
)
_KNOWN_MEASUREMENTS = text(
    "SELECT m.source, m.external_id FROM measurements m "
    "JOIN unnest(CAST(:sources AS text[]), CAST(:exts AS text[])) AS k(s, e) ON m.source = k.s AND m.external_id = k.e "
    "WHERE m.org_id = :org"
)
_CLAIM_ALL = text(
    "INSERT INTO external_ids (org_id, compartment, collection, system, value, record_id, client_id) "
    "SELECT :org, :compartment, * FROM unnest(CAST(:collections AS text[]), CAST(:systems AS text[]), "
    "CAST(:vals AS text[]), CAST(:records AS uuid[]), CAST(:clients AS uuid[])) ON CONFLICT DO NOTHING RETURNING 1"
)

Key = tuple[str, str, str]  # (collection, system, value)


def _ext_key(target: str, value: Any) -> Key | None:
    """The (collection, system, value) an ``{"external_id": ...}`` reference names, if it is well formed."""
    if isinstance(value, dict) and set(value) == {"external_id"} and isinstance(value["external_id"], str):
        system, sep, ident = value["external_id"].partition("|")
        if sep and system and ident and storable(system, ident):
            return target, system, ident
    return None


def _raw_refs(coll: Collection, resource: dict[str, Any]) -> list[Key]:
    """The identifiers a line names: its references by external id and its own identifiers."""
    keys: list[Key] = []
    for name, target, many in _ref_fields(coll):
        values = resource.get(name)
        for value in values if many and isinstance(values, list) else [values]:
            if (key := _ext_key(target, value)) is not None:
                keys.append(key)
    own = resource.get(coll.ext_field)
    if isinstance(own, list):
        keys += [(coll.name, i["system"], i["value"]) for i in own
                 if isinstance(i, dict) and isinstance(i.get("system"), str) and isinstance(i.get("value"), str)
                 and storable(i["system"], i["value"])]
    return keys


def _resolve_known(coll: Collection, resource: dict[str, Any], known: dict[Key, Any]) -> None:
    """``_resolve_refs`` against identifiers looked up for the whole chunk (or made by its earlier lines)."""
    for name, target, many in _ref_fields(coll):
        if name not in resource:
            continue
        values = resource[name]
        if many and isinstance(values, list):
            resource[name] = [_known(known, target, v, f"{name}.{i}") for i, v in enumerate(values)]
        else:
            resource[name] = _known(known, target, values, name)


def _known(known: dict[Key, Any], target: str, value: Any, field: str) -> Any:
    if not isinstance(value, dict):
        return value
    key = _ext_key(target, value)
    if key is None:
        if set(value) != {"external_id"} or not isinstance(value["external_id"], str):
            raise ValidationFailed.on(field, 'A reference is an id or {"external_id": "system|value"}',
                                      "invalid_reference")
        parse_identifier(value["external_id"], field)  # raises: _ext_key refuses only what it refuses
    found = known.get(key) if key is not None else None
    if found is None:
        raise ValidationFailed.on(field, f"No {target} with identifier {value['external_id']}", "reference_not_found")
    return str(found)


def _error(exc: DomainError | ValidationError) -> dict[str, Any]:
    problem = exc.problem() if isinstance(exc, DomainError) else validation_problem(exc.errors())
    return {"status": "error", "problem": problem}


async def _import_set_based(conn: Any, who: Principal, chunk: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    """A chunk of new records in a handful of statements (see the module's docstring).

    Raises ``_LineByLine`` when a line would update an existing record, ``_RetryCarefully`` when the
    database refuses the set-based write.
    """
    results: list[dict[str, Any]] = [{"line": number} for number, _ in chunk]
    parsed: list[tuple[int, Collection, dict[str, Any]]] = []
    for pos, (_, raw) in enumerate(chunk):
        try:
            coll, resource = _parse_line(who, raw)
        except DomainError as exc:
            results[pos].update(_error(exc))
            continue
        parsed.append((pos, coll, resource))

    # Every identifier the chunk names, looked up at once.
    wanted = {key for _, coll, resource in parsed for key in _raw_refs(coll, resource)}
    known: dict[Key, Any] = {}
    if wanted:
        keys = list(wanted)
        rows = await conn.execute(_KNOWN_IDS, {"org": who.org_id, "collections": [k[0] for k in keys],
                                               "systems": [k[1] for k in keys], "vals": [k[2] for k in keys]})
        known = {}
        for r in rows:
            if r.compartment != identifiers.ORG_WIDE:
                raise _LineByLine()  # which record it names depends on the line's client: service.upsert decides
            known[(r.collection, r.system, r.value)] = r.record_id
    sources = {(str(r.get("source")), str(r.get("external_id"))) for _, c, r in parsed
               if c.natural_key and r.get("source") and r.get("external_id")
               and storable(str(r.get("source")), str(r.get("external_id")))}
    if sources:  # an existing one (in any compartment the token sees): service.upsert or service.create decides
        pairs = list(sources)
        if (await conn.execute(_KNOWN_MEASUREMENTS, {"org": who.org_id, "sources": [p[0] for p in pairs],
                                                     "exts": [p[1] for p in pairs]})).first() is not None:
            raise _LineByLine()

    # Each line checked with its collection's create model; new ids given out in line order, so later
    # lines can name records made by earlier ones.
    pending: list[tuple[int, Collection, dict[str, Any], Any]] = []
    for pos, coll, resource in parsed:
        try:
            _resolve_known(coll, resource, known)
            payload = coll.create.model_validate(resource).model_dump()
        except (DomainError, ValidationError) as exc:
            results[pos].update(_error(exc))
            continue
        own = [(coll.name, i["system"], i["value"]) for i in payload.get(coll.ext_field) or []]
        if any(key in known for key in own):
            raise _LineByLine()  # it names an existing record (or an earlier line's): service.upsert or create
        try:
            identifiers.check_identity_create(who, coll)
        except DomainError as exc:
            results[pos].update(_error(exc))
            continue
        new_id = uuid7()
        for key in own:
            known.setdefault(key, new_id)
        pending.append((pos, coll, payload, new_id))

    # The referenced records (clients included), one statement per collection.
    ids: dict[str, set[Any]] = {}
    for _, coll, payload, _ in pending:
        if coll.client_owned:
            ids.setdefault("clients", set()).add(payload["client_id"])
        for ref in coll.refs:
            ids.setdefault(ref.target, set()).update(ref.ids(payload))
    made_here = {new_id for *_, new_id in pending}  # not in the database yet: checked as they are made below
    found: dict[str, dict[Any, dict[str, Any]]] = {
        name: await service.load_live(conn, who, name, list(wanted_ids - made_here))
        for name, wanted_ids in ids.items() if wanted_ids - made_here
    }

    # The collection's reference binding and rules, as for one create; a good line's record becomes
    # visible to the lines after it.
    rows_by: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for pos, coll, payload, new_id in pending:
        try:
            if coll.client_owned and payload["client_id"] not in found.get("clients", {}):
                raise service.client_missing(payload["client_id"])
            refs = service.bind_refs(coll, payload, found, None)
            ctx = await service.apply_rules(conn, who, coll, payload, refs, None)
        except DomainError as exc:
            results[pos].update(_error(exc))
            continue
        values = service.new_row(who, coll, payload, ctx, new_id)
        found.setdefault(coll.name, {})[new_id] = {**values, "deleted_at": None}
        rows_by.setdefault(coll.name, []).append((pos, values))

    # The writes: referenced tables first.
    try:
        claims: list[tuple[str, str, str, Any, Any]] = []
        for name in sorted(rows_by, key=lambda n: _FK_ORDER[REGISTRY[n].table.name]):
            coll = REGISTRY[name]
            written = await _insert_rows(conn, coll, [v for _, v in rows_by[name]])
            snapshots = []
            for (_, values), row in zip(rows_by[name], written, strict=True):
                out = service.serialize(coll, row)
                snapshots.append(snapshot(coll, out))
                client = values["id"] if coll.identity else values.get("client_id")
                claims += [(name, i["system"], i["value"], values["id"], client) for i in values["external_ids"]]
            await record_changes(conn, who, name, snapshots, "created")
            if coll.after_write:  # e.g. the safety rules of measurements, for the whole chunk at once
                await coll.after_write(conn, who, [Written(s) for s in snapshots])
            for (pos, _), snap in zip(rows_by[name], snapshots, strict=True):
                results[pos].update(_result("created", snap))
        if claims:
            got = (await conn.execute(_CLAIM_ALL, {
                "org": who.org_id, "compartment": identifiers.compartment(who), "collections": [c[0] for c in claims],
                "systems": [c[1] for c in claims], "vals": [c[2] for c in claims], "records": [c[3] for c in claims],
                "clients": [c[4] for c in claims]})).all()
            if len(got) != len(claims):
                raise _RetryCarefully()  # an identifier is taken (by a concurrent writer, or twice in the chunk)
    except (DBAPIError, asyncpg.PostgresError, DomainError) as exc:  # DomainError: a line's after_write refused it
        raise _RetryCarefully() from exc
    return results


async def _insert_rows(conn: Any, coll: Collection, rows: list[dict[str, Any]]) -> list[Any]:
    """One INSERT ... RETURNING for the rows, sent as one JSON document that PostgreSQL turns into rows of the
    table's own column types (``jsonb_populate_recordset``); columns no row sets keep their defaults. On the
    unit of work's asyncpg connection (same transaction and tenant); the rows come back in the given order."""
    table = coll.table
    columns = [c.name for c in table.c if any(c.name in row for row in rows)]
    names = ", ".join(f'"{c}"' for c in columns)
    sql = (f'INSERT INTO "{table.name}" ({names}) SELECT {names} '
           f'FROM jsonb_populate_recordset(NULL::"{table.name}", $1::jsonb) RETURNING *')
    written = {r["id"]: r for r in await (await driver(conn)).fetch(sql, dumps(rows).decode())}
    return [written[row["id"]] for row in rows]


async def _import(request: Request, who: Principal) -> AsyncIterator[bytes]:
    engine = request.app.state.ctx.engine
    chunk: list[tuple[int, bytes]] = []

    async def run_chunk(careful: bool) -> list[bytes]:
        """The chunk in one transaction. Optimistically without savepoints; if any line fails, the whole
        chunk is rolled back and run again carefully, one savepoint per line, so good lines still land."""
        out: list[bytes] = []
        async with engine.begin() as conn:
            await set_tenant(conn, who.org_id, who.patient_id)
            for number, raw in chunk:
                result: dict[str, Any] = {"line": number}
                try:
                    if careful:
                        with refusals():  # a write the database refuses is this line's error, like any other
                            async with conn.begin_nested():
                                result.update(await import_line(conn, who, raw))
                    else:
                        result.update(await import_line(conn, who, raw))
                except (DomainError, ValidationError, DBAPIError, asyncpg.PostgresError) as exc:
                    if not careful:
                        raise _RetryCarefully() from exc
                    if not isinstance(exc, DomainError | ValidationError):
                        raise
                    result.update(_error(exc))
                out.append(dumps(result) + b"\n")
            await audit.flush(conn, who)  # this chunk's audit row commits with it
        return out  # sent only once the chunk is committed

    async def set_based() -> list[bytes]:
        async with engine.begin() as conn:
            await set_tenant(conn, who.org_id, who.patient_id)
            results = await _import_set_based(conn, who, chunk)
            await audit.flush(conn, who)  # this chunk's audit row commits with it
        return [dumps(r) + b"\n" for r in results]  # sent only once the chunk is committed

    async def flush() -> list[bytes]:
        try:
            return await set_based()
        except _RetryCarefully:
            return await run_chunk(careful=True)
        except _LineByLine:
            pass
        try:
            return await run_chunk(careful=False)
        except _RetryCarefully:
            return await run_chunk(careful=True)

    async for item in _lines(request):
        chunk.append(item)
        if len(chunk) >= CHUNK_LINES:
            for line in await flush():
                yield line
            chunk = []
    if chunk:
        for line in await flush():
            yield line


class DuplexStreamingResponse(StreamingResponse):
    """Streams results while the request body is still being read.

    Starlette's StreamingResponse listens for a disconnect on ``receive`` for ASGI servers older than
    spec 2.4, which would steal the request body's messages from the import; the body reader itself
    notices a disconnect here, so the listener is not needed.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.stream_response(send)
        if self.background is not None:
            await self.background()


Importer = Annotated[Principal, needs_any("c")]
Exporter = Annotated[Principal, needs_any("s")]


@router.post("/import", operation_id="bulk_import", summary="Import NDJSON lines of any collection",
             openapi_extra=NDJSON_BODY, responses={**NDJSON_OUT, **problems(400, 401, 403, 415, 422)})
async def bulk_import(request: Request, who: Importer) -> DuplexStreamingResponse:
    audit.set_action("import")
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in (NDJSON, "application/ndjson", "application/jsonl"):
        raise UnsupportedMediaType(f"Send the lines as {NDJSON}")
    return DuplexStreamingResponse(_import(request, who), media_type=NDJSON, headers={"Cache-Control": "no-store"})


async def _export(request: Request, who: Principal, chosen: list[Collection],
                  since: datetime | None) -> AsyncIterator[bytes]:
    engine = request.app.state.ctx.reader  # the read replica when DATABASE_READ_URL is set (read-only, may lag)
    async with engine.connect() as conn, conn.begin():
        await set_tenant(conn, who.org_id, who.patient_id)
        for coll in chosen:
            table = coll.table
            stmt = readable_record(coll, who).where(table.c.deleted_at.is_(None))
            if since is not None:
                stmt = stmt.where(table.c.updated_at >= since)
            result = await conn.stream(stmt.order_by(table.c.id).execution_options(yield_per=500))
            async for rows in result.partitions(500):
                yield b"".join(dumps({"type": coll.type_name, "resource": service.serialize(coll, r)}) + b"\n"
                               for r in rows)


class ExportQuery(QueryParams):
    types: str | None = types_field("Comma-separated types; default all readable")
    since: Instant | None = Field(None, description="Only records updated at or after this time (a date: 00:00 UTC)")


@router.get("/export", operation_id="bulk_export", summary="Export records as NDJSON",
            responses={**NDJSON_OUT, **problems(400, 401, 403, 422)})
async def bulk_export(request: Request, who: Exporter, query: Annotated[ExportQuery, Query()]) -> StreamingResponse:
    audit.set_action("export")
    chosen = readable_types(who, query.types)
    return StreamingResponse(_export(request, who, chosen, query.since), media_type=NDJSON,
                             headers={"Cache-Control": "no-store"})

