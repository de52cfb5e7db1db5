"""Batch ingest of measurements from mood-tracking apps: per-item results, one INSERT for the valid rows,
duplicates by (source, external_id) stored once, safety alerts opened in the same transaction."""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service import metrics
from service.auth.principal import Principal
from service.auth.rest import needs
from service.collections import identifiers
from service.collections.idempotency import idempotent
from service.collections.records import record_changes
from service.collections.registry import Written
from service.collections.rest import Db, IdempotencyKeyHeader, problems
from service.collections.service import apply_rules, bind_refs, client_missing, live_ids, load_live
from service.collections.types import Out, Strict, list_of, uuid7s
from service.db import driver
from service.domain.clients import clients
from service.domain.outcomes import a_out, measurement_to_out, measurement_to_row, measurements, outcome_markers
from service.domain.safety import measurement_after_write
from service.errors import DomainError
from service.http import NO_STORE, JSONOut, StrictRoute, dumps
from service.problems import validation_problem

MAX_BATCH = 1000

router = APIRouter(prefix="/v1/measurements", tags=["Measurements"], route_class=StrictRoute)

if TYPE_CHECKING:  # a model built at import is no type to a checker: it sees a pydantic model
    AlertOut = BaseModel
else:
    AlertOut = a_out


class BatchIn(Strict):
    measurements: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_BATCH,
        description="Up to 1,000 measurements, each shaped as MeasurementIn; each is checked on its own",
        json_schema_extra={"items": {"$ref": "#/components/schemas/MeasurementIn"}},
    )


class BatchResult(Out):
    index: int
    status: Literal["created", "duplicate", "error"]
    id: UUID | None = None
    problem: dict[str, Any] | None = None
    safety_alert: AlertOut | None = None


class BatchOut(Out):
    results: list[BatchResult]


# Sent on the unit of work's asyncpg connection (service.db.driver, same transaction and tenant): the rows
# it returns are the values the database set, the rest of each record is what was inserted.
_INSERT = """
INSERT INTO measurements (org_id, id, client_id, marker_id, value, items, observed_at, observed_offset, source,
                          external_id, note, compartment)
SELECT $1, t.id, t.client_id, t.marker_id, t.value, t.items, t.observed_at, t.observed_offset, t.source,
       t.external_id, t.note, $3
FROM json_to_recordset($2::json)
     AS t(id uuid, client_id uuid, marker_id uuid, value float8, items smallint[], observed_at timestamptz,
          observed_offset smallint, source text, external_id text, note text)
ON CONFLICT (org_id, source, external_id, compartment) WHERE external_id IS NOT NULL DO NOTHING
RETURNING id, created_at, updated_at, version
"""
# The records that took an item's (source, external_id) first: in the writer's compartment (a patient token's
# own; service.collections.identifiers), so a duplicate is only ever one the writer may see.
_EXISTING = text(
    "SELECT id, source, external_id FROM measurements WHERE org_id = :org AND compartment = :compartment "
    "AND (source, external_id) IN (SELECT * FROM unnest(CAST(:sources AS text[]), CAST(:exts AS text[])))"
)


def _error(index: int, exc: DomainError | ValidationError) -> dict[str, Any]:
    problem = exc.problem() if isinstance(exc, DomainError) else validation_problem(exc.errors())
    return {"index": index, "status": "error", "problem": problem}


_ITEMS = TypeAdapter(list_of(measurements.create))
# What the batch reads of a marker: its client (bind_refs), instrument and range (measurement_fits_marker).
# Not the jsonb external ids nor the timestamps, which cost a decode per row.
_MARKER_COLUMNS = ("id", "client_id", "instrument", "min", "max")


def _validate(items: list[dict[str, Any]], results: list[dict[str, Any] | None]) -> list[tuple[int, dict[str, Any]]]:
    """The valid items as (index, body): the whole batch in one validation when it is all valid, else item by
    item, so that each invalid item gets its own problem (the results of ``results``)."""
    try:
        return list(enumerate(_ITEMS.dump_python(_ITEMS.validate_python(items))))
    except ValidationError:
        pass
    parsed: list[tuple[int, dict[str, Any]]] = []
    for i, raw in enumerate(items):
        try:
            parsed.append((i, measurements.create.model_validate(raw).model_dump()))
        except ValidationError as exc:
            results[i] = _error(i, exc)
    return parsed


async def ingest(conn: AsyncConnection, who: Principal, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any] | None] = [None] * len(items)
    parsed = _validate(items, results)
    markers: dict[Any, dict[str, Any]] = {}
    live_clients: set[Any] = set()
    if parsed:
        markers = await load_live(conn, who, outcome_markers.name, list({p["marker_id"] for _, p in parsed}),
                                  _MARKER_COLUMNS)
        live_clients = await live_ids(conn, who, clients.name, list({p["client_id"] for _, p in parsed}))
    found = {outcome_markers.name: markers}

    rows: list[tuple[int, dict[str, Any]]] = []
    first_of: dict[tuple[str | None, str | None], int] = {}
    duplicates_in_batch: dict[int, int] = {}
    for i, payload in parsed:
        try:
            if payload["client_id"] not in live_clients:
                raise client_missing(payload["client_id"])
            ctx = await apply_rules(conn, who, measurements, payload, bind_refs(measurements, payload, found, None),
                                    None)
        except DomainError as exc:
            results[i] = _error(i, exc)
            continue
        values = measurement_to_row({**payload, **ctx.extra})
        key = (values.get("source"), values.get("external_id"))
        if key[1] is not None:
            if key in first_of:
                duplicates_in_batch[i] = first_of[key]
                continue
            first_of[key] = i
        rows.append((i, values))

    rows = await _held_elsewhere(conn, who, rows, results)
    stamps = {r["id"]: r for r in await _insert(conn, who, [v for _, v in rows])}
    created: list[dict[str, Any]] = []
    missing: list[tuple[int, tuple[Any, Any]]] = []
    for i, values in rows:
        stamp = stamps.get(values["id"])
        if stamp is not None:
            record = _record(values, stamp)
            created.append(record)
            results[i] = {"index": i, "status": "created", "id": record["id"], "record": record}
        else:
            missing.append((i, (values["source"], values["external_id"])))
    if missing:
        existing = {(r.source, r.external_id): r.id for r in (await conn.execute(_EXISTING, {
            "org": who.org_id, "compartment": identifiers.compartment(who),
            "sources": [k[0] for _, k in missing], "exts": [k[1] for _, k in missing]})).all()}
        for i, key in missing:
            results[i] = {"index": i, "status": "duplicate", "id": existing.get(key)}
    for i, first in duplicates_in_batch.items():
        results[i] = {"index": i, "status": "duplicate", "id": (results[first] or {}).get("id")}

    await record_changes(conn, who, measurements.name, [{**r, "deleted_at": None} for r in created], "created")
    await measurement_after_write(conn, who, [Written(r) for r in created])  # the safety rules, for the batch
    for result in results:
        if result and result["status"] == "created":
            record = result.pop("record")
            if record["safety_alert"] is not None:
                result["safety_alert"] = record["safety_alert"]
    metrics.count_ingest(results)
    return [r for r in results if r is not None]


async def _held_elsewhere(conn: AsyncConnection, who: Principal, rows: list[tuple[int, dict[str, Any]]],
                          results: list[dict[str, Any] | None]) -> list[tuple[int, dict[str, Any]]]:
    """The rows to insert: those whose (source, external_id) another compartment's record holds for the same
    client are duplicates of it (``identifiers.held_elsewhere``; the INSERT's unique index sees the writer's)."""
    keyed = [(v["client_id"], v["source"], v["external_id"]) for _, v in rows if v.get("external_id") is not None]
    held = await identifiers.held_elsewhere(conn, who, measurements, keyed)
    if not held:
        return rows
    kept = []
    for i, values in rows:
        found = held.get((values["client_id"], values.get("source"), values.get("external_id")))
        if found is None:
            kept.append((i, values))
        else:
            results[i] = {"index": i, "status": "duplicate", "id": found}
    return kept


_STORED = ("id", "client_id", "marker_id", "value", "items", "observed_at", "observed_offset", "source",
           "external_id", "note")
_stored = itemgetter(*_STORED)  # every one is set: the validated body's fields, observed_offset and the new id


def _record(values: dict[str, Any], stamp: Any) -> dict[str, Any]:
    """The measurement as ``serialize`` renders its stored row: the columns the INSERT wrote (``values``) and
    those the database set (``stamp``: RETURNING created_at, updated_at, version)."""
    record = dict(zip(_STORED, _stored(values), strict=True))
    record.update(created_at=stamp["created_at"], updated_at=stamp["updated_at"], version=stamp["version"])
    return measurement_to_out(record)


async def _insert(conn: AsyncConnection, who: Principal, rows: list[dict[str, Any]]) -> list[Any]:
    """The rows as one JSON array (one parameter, encoded by orjson in one call, where ten arrays of a hundred
    elements each cost asyncpg a Python-level check per element); PostgreSQL reads each value with the column's
    type (a float's shortest text reads back as the same float8, a time with its offset as the same instant)."""
    if not rows:
        return []
    for row, new_id in zip(rows, uuid7s(len(rows)), strict=True):
        row["id"] = new_id
    fetched = await (await driver(conn)).fetch(_INSERT, who.org_id, dumps(rows).decode(), identifiers.compartment(who))
    return fetched


Ingester = Annotated[Principal, needs("Measurement", "c")]


def _uuid_or_none(value: Any) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


@router.post("/batch", response_model=BatchOut, operation_id="create_measurements_batch",
             summary="Post up to 1,000 measurements; each item gets its own result",
             responses=problems(400, 401, 403, 409, 413, 415, 422))
async def post_batch(body: BatchIn, who: Ingester, db: Db, request: Request,
                     idempotency_key: IdempotencyKeyHeader = None) -> Response:
    async def run() -> Response:
        return JSONOut({"results": await ingest(db, who, body.measurements)}, headers=NO_STORE)

    def client_ids(response: Response) -> list[Any]:
        # Items are validated one by one, so the raw body may name anything: keep only what is a client id.
        return list({cid for m in body.measurements if (cid := _uuid_or_none(m.get("client_id"))) is not None})

    return await idempotent(request, db, who, run, client_ids=client_ids)
