"""Batch ingest of measurements from mood-tracking apps, the use case (no HTTP here: its route is declared with
the measurements router, ``collections.rest.batch_route``): per-item results, one statement reading what the rules
need for the whole batch and one writing the valid rows with their history, change-feed and outbox rows,
duplicates by (source, external_id) stored once, safety alerts opened in the same transaction, every item through
the rules every other write path runs (``apply_rules``, ``bind_refs``, ``measurement_after_write``)."""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy import (
    JSON,
    Float,
    Select,
    Text,
    Uuid,
    any_,
    cast,
    column,
    func,
    literal_column,
    null,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.asyncio import AsyncConnection

from service.api.http import dumps
from service.api.problems import validation_problem
from service.auth.principal import Principal
from service.collections import identifiers
from service.collections.records import CHANGES_CTES, audit_written, changes_params, compiled
from service.collections.registry import Collection, Written
from service.collections.repository import CompiledRead, param, readable
from service.collections.service import apply_rules, bind_refs, client_missing
from service.collections.sqljson import iso_datetime
from service.collections.types import Out, Strict, list_of, uuid7s
from service.db import driver
from service.domain.clients import clients
from service.domain.outcomes import a_out, measurement_to_row, measurements, outcome_markers
from service.domain.safety import measurement_after_write
from service.errors import DomainError
from service.telemetry import metrics

MAX_BATCH = 1000

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


# What the batch reads before its rules run, in one statement (``readable()`` for the markers and clients, as every
# reference check reads them): for the items' (client, marker, source, external id), the live markers (kind 1:
# their client for ``bind_refs``, instrument and range for ``measurement_fits_marker``, not the jsonb external ids
# nor the timestamps, which cost a decode per row), the live clients (kind 2) and the records of another
# compartment that hold an item's (source, external_id) for its client (kind 3, ``identifiers.held_elsewhere``;
# the INSERT's unique index sees the writer's own).
_MARKER, _CLIENT, _HELD = 1, 2, 3


def _any(ids: Any) -> Any:
    """``= ANY(ARRAY(SELECT ids))``: the records are read by their primary key, one index probe per id (an ``IN``
    over the JSON rows lets the planner, which expects a hundred of them, scan the organization's whole table)."""
    return any_(func.array(select(ids).scalar_subquery()))


def _lookup_statement(who: Principal) -> Select[Any]:
    keys = select(func.json_to_recordset(cast(param("items"), JSON)).table_valued(
        column("client_id", Uuid()), column("marker_id", Uuid()), column("source", Text()),
        column("external_id", Text())).render_derived(name="k", with_types=True)).cte("keys")
    m, c = outcome_markers.table, clients.table
    none_text, none_float, none_uuid = cast(null(), Text()), cast(null(), Float()), cast(null(), Uuid())
    found_markers = readable(m, who).where(m.c.id == _any(keys.c.marker_id), m.c.deleted_at.is_(None)) \
        .with_only_columns(literal_column(str(_MARKER)).label("kind"), m.c.id, m.c.client_id, m.c.instrument,
                           m.c.min, m.c.max, none_text.label("source"), none_text.label("external_id"))
    found_clients = readable(c, who).where(c.c.id == _any(keys.c.client_id), c.c.deleted_at.is_(None)) \
        .with_only_columns(literal_column(str(_CLIENT)), c.c.id, none_uuid, none_text, none_float, none_float,
                           none_text, none_text)
    held = identifiers.held_elsewhere(who, measurements, keys.alias("k")).subquery("held")
    found_held = select(literal_column(str(_HELD)), held.c.id, held.c.client_id, none_text, none_float, none_float,
                        held.c.source, held.c.external_id)
    return select(union_all(found_markers, found_clients, found_held).subquery("found"))


_LOOKUP = CompiledRead(_lookup_statement)


async def _look_up(conn: AsyncConnection, who: Principal, parsed: list[tuple[int, dict[str, Any]]]) -> tuple[
        dict[Any, dict[str, Any]], set[Any], dict[tuple[Any, Any, Any], Any]]:
    """The markers by id, the ids of the live clients, and the holders elsewhere by (client, source, external id)."""
    keys = dumps([{"client_id": p["client_id"], "marker_id": p["marker_id"], "source": p["source"],
                   "external_id": p["external_id"]} for _, p in parsed]).decode()
    markers: dict[Any, dict[str, Any]] = {}
    live: set[Any] = set()
    held: dict[tuple[Any, Any, Any], Any] = {}
    for kind, ident, client_id, instrument, low, high, source, external_id in await _LOOKUP.fetch(
            conn, who, items=keys):
        if kind == _MARKER:
            markers[ident] = {"id": ident, "client_id": client_id, "instrument": instrument, "min": low, "max": high}
        elif kind == _CLIENT:
            live.add(ident)
        else:
            held[(client_id, source, external_id)] = ident
    return markers, live, held


# The rows as one JSON array (one parameter, encoded by orjson in one call, where ten arrays of a hundred elements
# each cost asyncpg a Python-level check per element); PostgreSQL reads each value with the column's type (a
# float's shortest text reads back as the same float8, a time with its offset as the same instant). In the same
# statement: each new record's history, change-feed and outbox rows (``records.CHANGES_CTES``, fed by the
# INSERT's RETURNING: its snapshot is the columns sent, as ``serialize`` renders them, and those the database
# set), and the items the unique index refused, with the record of the writer's compartment that holds their
# (source, external_id) as this statement's snapshot sees it.
_STORED = ("id", "client_id", "marker_id", "value", "items", "observed_at", "source", "external_id", "note",
           "observed_offset")
# Every one is set: the validated body's fields, observed_offset and the new id; a row holding these keys only is
# sent as it is (the order of an object's keys is not kept by jsonb), one holding more is cut down to them.
_stored = itemgetter(*_STORED)
_STORED_KEYS = frozenset(_STORED)


def _iso(column_name: str) -> str:
    """``sqljson.iso_datetime`` of a column, as SQL text (a timestamp as the service's JSON writes it)."""
    return str(iso_datetime(literal_column(column_name)).compile(dialect=PGDialect(),
                                                                 compile_kwargs={"literal_binds": True}))


# The write's first parts (bench/rowcost.py prices them alone): the rows, the measurements inserted (duplicates
# skipped), and ``v``, each new version's snapshot as ``CHANGES_CTES`` records it.
ROWS_CTES = """t AS (
  SELECT e.j, r.* FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS e(j),
       jsonb_to_record(e.j) AS r(id uuid, client_id uuid, marker_id uuid, value float8, items smallint[],
                                 observed_at timestamptz, observed_offset smallint, source text, external_id text,
                                 note text)
), ins AS (
  INSERT INTO measurements (org_id, id, client_id, marker_id, value, items, observed_at, observed_offset, source,
                            external_id, note, compartment)
  SELECT :org_id, id, client_id, marker_id, value, items, observed_at, observed_offset, source, external_id, note,
         :compartment
  FROM t
  ON CONFLICT (org_id, source, external_id, compartment) WHERE external_id IS NOT NULL DO NOTHING
  RETURNING id, client_id, version, created_at, updated_at
)"""
SNAPSHOT_CTE = f"""v AS (
  SELECT ins.id AS record_id, ins.version, ins.client_id,
         (t.j - 'observed_offset') || jsonb_build_object(
           'created_at', {_iso("ins.created_at")}, 'updated_at', {_iso("ins.updated_at")}, 'version', ins.version,
           'deleted_at', NULL) AS data
  FROM ins JOIN t USING (id)
)"""
_WRITE = text(f"""
WITH {ROWS_CTES}, {SNAPSHOT_CTE},{CHANGES_CTES}
SELECT t.id, (SELECT m.id FROM measurements m WHERE m.org_id = :org_id AND m.compartment = :compartment
                AND m.source = t.source AND m.external_id = t.external_id) AS holder
FROM t WHERE NOT EXISTS (SELECT FROM ins WHERE ins.id = t.id)
""")
# The records that took an item's (source, external_id) first, in the writer's compartment (a patient token's own;
# service.collections.identifiers), so a duplicate is only ever one the writer may see: for an item the unique
# index refused because of a record committed after the write's snapshot was taken (a concurrent batch).
_EXISTING = text(
    "SELECT id, source, external_id FROM measurements WHERE org_id = :org AND compartment = :compartment "
    "AND (source, external_id) IN (SELECT * FROM unnest(CAST(:sources AS text[]), CAST(:exts AS text[])))"
)


async def _write(conn: AsyncConnection, who: Principal, rows: list[tuple[int, dict[str, Any]]]) -> dict[Any, Any]:
    """Stores the rows that are not duplicates, with their changes; the ids of the others (``rows`` hold the ids
    given), each with the id of the record that holds its (source, external_id)."""
    if not rows:
        return {}
    for (_, values), new_id in zip(rows, uuid7s(len(rows)), strict=True):
        values["id"] = new_id
    params = changes_params(who, measurements.name, "created")
    params.update(compartment=identifiers.compartment(who), rows=dumps(
        [values if values.keys() == _STORED_KEYS else dict(zip(_STORED, _stored(values), strict=True))
         for _, values in rows]).decode())
    sql, names = compiled(conn, _WRITE)
    refused = {r[0]: r[1] for r in await (await driver(conn)).fetch(sql, *[params[name] for name in names])}
    if refused and None in refused.values():
        late = [values for _, values in rows if values["id"] in refused and refused[values["id"]] is None]
        existing = {(r.source, r.external_id): r.id for r in (await conn.execute(_EXISTING, {
            "org": who.org_id, "compartment": identifiers.compartment(who),
            "sources": [v["source"] for v in late], "exts": [v["external_id"] for v in late]})).all()}
        refused.update({v["id"]: existing.get((v["source"], v["external_id"])) for v in late})
    return refused


def _error(index: int, exc: DomainError | ValidationError) -> dict[str, Any]:
    problem = exc.problem() if isinstance(exc, DomainError) else validation_problem(exc.errors())
    return {"index": index, "status": "error", "problem": problem}


_ITEMS = TypeAdapter(list_of(measurements.create))


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
    if not parsed:
        metrics.count_ingest(results)
        return [r for r in results if r is not None]
    markers, live_clients, held = await _look_up(conn, who, parsed)
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
        payload.update(ctx.extra)  # the body is this item's own dict (``_validate``): its row, in place
        values = measurement_to_row(payload)
        key = (values["source"], values["external_id"])
        if key[1] is not None:
            if key in first_of:
                duplicates_in_batch[i] = first_of[key]
                continue
            first_of[key] = i
            holder = held.get((values["client_id"], *key))
            if holder is not None:  # another compartment's record, for the same client
                results[i] = {"index": i, "status": "duplicate", "id": holder}
                continue
        rows.append((i, values))

    refused = await _write(conn, who, rows)
    created: list[tuple[int, dict[str, Any]]] = []
    for i, values in rows:
        if values["id"] in refused:
            results[i] = {"index": i, "status": "duplicate", "id": refused[values["id"]]}
        else:
            created.append((i, values))
            results[i] = {"index": i, "status": "created", "id": values["id"]}
    for i, first in duplicates_in_batch.items():
        results[i] = {"index": i, "status": "duplicate", "id": (results[first] or {}).get("id")}

    if created:
        audit_written(measurements.name, [v["id"] for _, v in created], [v["client_id"] for _, v in created],
                      "created")
        # The safety rules, for the batch (the markers it read are theirs: read in this transaction, instrument
        # included); they set each record's safety_alert.
        await measurement_after_write(conn, who, [Written(values) for _, values in created], markers)
        for i, values in created:
            if values["safety_alert"] is not None:
                results[i]["safety_alert"] = values["safety_alert"]  # type: ignore[index]
    metrics.count_ingest(results)
    return [r for r in results if r is not None]


def _uuid_or_none(value: Any) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def batch_client_ids(body: BatchIn) -> list[Any]:
    """The clients a batch names, for its idempotency record: items are validated one by one, so the raw body may
    name anything; only what is a client id is kept."""
    return list({cid for m in body.measurements if (cid := _uuid_or_none(m.get("client_id"))) is not None})


@dataclass(frozen=True)
class BatchUseCase:
    """What ``collections.rest.batch_route`` declares as ``POST /v1/<collection>/batch``."""

    collection: Collection
    body: type[BatchIn]
    out: type[BatchOut]
    run: Any  # (conn, who, body) -> per-item results
    client_ids: Any  # (body) -> the clients it names
    summary: str


async def run_batch(conn: AsyncConnection, who: Principal, body: BatchIn) -> list[dict[str, Any]]:
    return await ingest(conn, who, body.measurements)


BATCH = BatchUseCase(collection=measurements, body=BatchIn, out=BatchOut, run=run_batch, client_ids=batch_client_ids,
                     summary="Post up to 1,000 measurements; each item gets its own result")
