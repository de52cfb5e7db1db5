"""Bulk NDJSON import and export, streaming both ways so memory stays flat however long the file.

Import lines are ``{"type": ..., "resource": ...}``; a reference field may hold an id or
``{"external_id": "system|value"}`` of a record made by an earlier line (or before). Lines are written
in chunks, one savepoint per line, and each chunk's results are sent only after it commits: nothing
reported as stored can be lost to a dropped connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import text

from service import audit
from service.auth.principal import Principal
from service.auth.rest import needs_any
from service.auth.scopes import required_scope
from service.collections import service
from service.collections.registry import REGISTRY, Collection
from service.collections.repository import parse_identifier, readable
from service.collections.rest import problems
from service.collections.types import Timestamp
from service.db import set_tenant
from service.errors import DomainError, Forbidden, UnsupportedMediaType, ValidationFailed
from service.http import dumps, loads_strict
from service.problems import validation_problem
from service.sync.changes import readable_types, types_query

router = APIRouter(prefix="/v1/bulk", tags=["Sync"])
NDJSON = "application/x-ndjson"
CHUNK_LINES = 200
MAX_LINE = 1_000_000

_RESOLVE = text(
    "SELECT record_id FROM external_ids WHERE org_id = :org AND collection = :collection AND system = :system "
    "AND value = :value"
)

NDJSON_BODY = {"requestBody": {"required": True, "content": {NDJSON: {"schema": {
    "type": "string", "description": 'One JSON object per line: {"type": "strength", "resource": {...}}'}}}}}
NDJSON_OUT = {200: {"description": "One result or record per line",
                    "content": {NDJSON: {"schema": {"type": "string"}}}}}


def _by_type(name: Any) -> Collection:
    for coll in REGISTRY.values():
        if coll.type_name == name:
            return coll
    raise ValidationFailed.on("type", f"Unknown type {name!r}", "unknown_type")


async def _resolve(conn: Any, who: Principal, target: str, value: Any, field: str) -> Any:
    """An ``{"external_id": "system|value"}`` reference becomes the id of the record it names."""
    if not isinstance(value, dict):
        return value
    if set(value) != {"external_id"} or not isinstance(value["external_id"], str):
        raise ValidationFailed.on(field, 'A reference is an id or {"external_id": "system|value"}', "invalid_reference")
    system, ident = parse_identifier(value["external_id"], field)
    found = (await conn.execute(_RESOLVE, {"org": who.org_id, "collection": target, "system": system,
                                           "value": ident})).scalar()
    if found is None:
        raise ValidationFailed.on(field, f"No {target} with identifier {value['external_id']}", "reference_not_found")
    return str(found)


async def _resolve_refs(conn: Any, who: Principal, coll: Collection, resource: dict[str, Any]) -> None:
    fields = [("client_id", "clients", False)] if coll.client_owned else []
    fields += [(r.field, r.target, r.many) for r in coll.refs if "." not in r.field]
    for name, target, many in fields:
        if name not in resource:
            continue
        if many and isinstance(resource[name], list):
            resource[name] = [await _resolve(conn, who, target, v, f"{name}.{i}") for i, v in enumerate(resource[name])]
        else:
            resource[name] = await _resolve(conn, who, target, resource[name], name)


async def import_line(conn: Any, who: Principal, raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_LINE:
        raise ValidationFailed.on("resource", "The line is too long", "line_too_long")
    doc = loads_strict(raw)
    if not isinstance(doc, dict) or set(doc) != {"type", "resource"} or not isinstance(doc["resource"], dict):
        raise ValidationFailed.on("type", 'Each line is {"type": ..., "resource": {...}}', "invalid_line")
    coll = _by_type(doc["type"])
    if not who.allows(coll.resource, "c"):
        raise Forbidden(required_scope(coll.resource, "c", who.context))  # type: ignore[arg-type]
    resource = dict(doc["resource"])
    await _resolve_refs(conn, who, coll, resource)
    body = coll.create.model_validate(resource)
    identifier = _identifier(coll, body.model_dump())
    if identifier and who.allows(coll.resource, "u"):
        record, created = await service.upsert(conn, who, coll, identifier[0], identifier[1], body, None)
    else:
        record, created = await service.create(conn, who, coll, body), True
    return {"status": "created" if created else "updated", "id": record["id"]}


def _identifier(coll: Collection, payload: dict[str, Any]) -> tuple[str, str] | None:
    if coll.name == "measurements":
        if payload.get("source") and payload.get("external_id"):
            return payload["source"], payload["external_id"]
        return None
    ids = payload.get(coll.ext_field) or []
    return (ids[0]["system"], ids[0]["value"]) if ids else None


async def _lines(request: Request) -> AsyncIterator[tuple[int, bytes]]:
    buffer = b""
    number = 0
    async for chunk in request.stream():
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end], buffer[end + 1:]
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
                        async with conn.begin_nested():
                            result.update(await import_line(conn, who, raw))
                    else:
                        result.update(await import_line(conn, who, raw))
                except (DomainError, ValidationError) as exc:
                    if not careful:
                        raise _RetryCarefully() from exc
                    problem = exc.problem() if isinstance(exc, DomainError) else validation_problem(exc.errors())
                    result.update(status="error", problem=problem)
                out.append(dumps(result) + b"\n")
            await audit.flush(conn, who)  # this chunk's audit row commits with it
        return out  # sent only once the chunk is committed

    async def flush() -> list[bytes]:
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
            stmt = readable(table, who).where(table.c.deleted_at.is_(None))
            if since is not None:
                stmt = stmt.where(table.c.updated_at >= since)
            result = await conn.stream(stmt.order_by(table.c.id).execution_options(yield_per=500))
            async for rows in result.partitions(500):
                yield b"".join(dumps({"type": coll.type_name, "resource": service.serialize(coll, r)}) + b"\n"
                               for r in rows)


@router.get("/export", operation_id="bulk_export", summary="Export records as NDJSON",
            responses={**NDJSON_OUT, **problems(400, 401, 403, 422)})
async def bulk_export(
    request: Request, who: Exporter,
    types: str | None = types_query("Comma-separated types; default all readable"),
    since: Timestamp | None = Query(None, description="Only records updated at or after this time"),
) -> StreamingResponse:
    audit.set_action("export")
    chosen = readable_types(who, types)
    return StreamingResponse(_export(request, who, chosen, since), media_type=NDJSON,
                             headers={"Cache-Control": "no-store"})

