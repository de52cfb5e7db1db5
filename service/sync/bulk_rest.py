"""``/v1/bulk``: NDJSON import and export over HTTP, streaming both ways (the work: ``service.sync.bulk``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from service.api.dependencies import needs, problems
from service.api.http import QueryParams, StrictRoute
from service.audit import service as audit
from service.auth.principal import Principal
from service.collections.types import Instant
from service.errors import UnsupportedMediaType
from service.sync import bulk
from service.sync.changes import readable_types
from service.sync.changes_rest import types_field

router = APIRouter(prefix="/v1/bulk", tags=["Sync"], route_class=StrictRoute)
NDJSON = "application/x-ndjson"


NDJSON_BODY = {"requestBody": {"required": True, "content": {NDJSON: {"schema": {
    "type": "string", "description": 'One JSON object per line: {"type": "strength", "resource": {...}}'}}}}}
NDJSON_OUT: dict[int | str, dict[str, Any]] = {200: {"description": "One result or record per line",
                    "content": {NDJSON: {"schema": {"type": "string"}}}}}


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
        if len(buffer) > bulk.MAX_LINE:
            number += 1
            yield number, buffer
            buffer = b""
    if buffer.strip():
        yield number + 1, buffer


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


Importer = Annotated[Principal, needs("*", "c")]
Exporter = Annotated[Principal, needs("*", "s")]


@router.post("/import", operation_id="bulk_import", summary="Import NDJSON lines of any collection",
             openapi_extra=NDJSON_BODY, responses={**NDJSON_OUT, **problems(400, 401, 403, 415, 422)})
async def bulk_import(request: Request, who: Importer) -> DuplexStreamingResponse:
    audit.set_action("import")
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in (NDJSON, "application/ndjson", "application/jsonl"):
        raise UnsupportedMediaType(f"Send the lines as {NDJSON}")
    results = bulk.import_lines(request.app.state.ctx.engine, who, _lines(request))
    return DuplexStreamingResponse(results, media_type=NDJSON, headers={"Cache-Control": "no-store"})


class ExportQuery(QueryParams):
    types: str | None = types_field("Comma-separated types; default all readable")
    since: Instant | None = Field(None, description="Only records updated at or after this time (a date: 00:00 UTC)")


@router.get("/export", operation_id="bulk_export", summary="Export records as NDJSON",
            responses={**NDJSON_OUT, **problems(400, 401, 403, 422)})
async def bulk_export(request: Request, who: Exporter, query: Annotated[ExportQuery, Query()]) -> StreamingResponse:
    audit.set_action("export")
    chosen = readable_types(who, query.types)
    return StreamingResponse(
        # the read replica when DATABASE_READ_URL is set (read-only, may lag)
        bulk.export_records(request.app.state.ctx.reader, who, chosen, query.since), media_type=NDJSON,
                             headers={"Cache-Control": "no-store"})
