"""Batch ingest of measurements from mood-tracking apps, the use case (no HTTP here: its route is declared with
the measurements router, ``collections.rest.batch_route``): per-item results, one statement checking every item and
writing the valid rows with their history, change-feed and outbox rows, duplicates by (source, external_id) stored
once, safety alerts opened in the same transaction, every item through the rules every other write path runs
(``outcomes.fit_join`` in the statement; the problems of ``client_missing``, ``bind_refs`` and ``fit_problem``;
``measurement_after_write``)."""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.api.http import dumps
from service.api.problems import validation_problem
from service.auth.principal import Principal
from service.collections import identifiers
from service.collections.records import FEED_CTE, OUTBOX_CTES, audit_written, changes_params, compiled
from service.collections.registry import Collection, Written
from service.collections.service import bind_refs, client_missing
from service.collections.types import Out, Strict, list_of, uuid7s
from service.db import driver
from service.domain.outcomes import (
    a_out,
    fit_join,
    fit_problem,
    measurement_fits_marker,
    measurement_to_row,
    measurements,
)
from service.domain.safety import measurement_after_write
from service.errors import DomainError
from service.telemetry import metrics

MAX_BATCH = 1000
# A batch asks the collection's one rule in its statement (``outcomes.fit_join``, which ``measurement_fits_marker``
# asks for a single write): a rule added to the collection would not be asked of batches, so it stops the import.
if measurements.rules != [measurement_fits_marker]:
    raise RuntimeError("measurement_batch asks outcomes.fit_join only: ask the new rule of measurements there too")

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


# The batch in one statement, after pydantic has checked each item's shape: the rows as one JSON array (one
# parameter, encoded by orjson in one call, where ten arrays of a hundred elements each cost asyncpg a Python-level
# check per element; PostgreSQL reads each value with the column's type: a float's shortest text reads back as the
# same float8, a time with its offset as the same instant), each checked against what every write of a measurement
# is checked against (``chk``: a live client, a live marker of that client, ``outcomes.fit_join``; the clients and
# markers as ``readable()`` reads them, the organization's and a patient token's patient's only: the client is
# the patient, and the marker the item's client's), the first of
# each (source, external_id) in the batch and no record of another compartment holding it (``ok``,
# ``identifiers.held_elsewhere``), the rest inserted with their change-feed and outbox rows (``records``' CTEs, fed
# by the INSERT's RETURNING) and as their own first version (``VERSIONS_CTE``: no history row). Its answer is one
# row per item, in order: what the checks found, and for an item the unique index refused, the record of the
# writer's compartment that holds its (source, external_id) as this statement's snapshot sees it. Python words the
# problems (``service.client_missing``, ``bind_refs``, ``outcomes.fit_problem``).
_STORED = ("id", "client_id", "marker_id", "value", "items", "observed_at", "source", "external_id", "note",
           "observed_offset")
# Every one is set: the validated body's fields, observed_offset and the new id; a row holding these keys only is
# sent as it is (the order of an object's keys is not kept by jsonb), one holding more is cut down to them.
_stored = itemgetter(*_STORED)
_STORED_KEYS = frozenset(_STORED)


# The write's first parts (bench/rowcost.py prices them alone): the rows, their checks, the measurements inserted
# (duplicates skipped), each with who wrote it (its first version's author, ``Measurement.first_version_by``).
# ``passes`` and ``writes`` are columns, not filters on their conditions: PostgreSQL keeps no statistics of a CTE and
# takes half its rows for a boolean column but 0.5 % for an ``IS NULL``.
ROWS_CTES = f"""t AS (
  SELECT e.i, r.* FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS e(j, i),
       jsonb_to_record(e.j) AS r(id uuid, client_id uuid, marker_id uuid, value float8, items smallint[],
                                 observed_at timestamptz, observed_offset smallint, source text, external_id text,
                                 note text)
), chk AS (
  SELECT t.*, c.id IS NOT NULL AS client_live, m.id IS NOT NULL AS marker_found, m.instrument, m.min AS low,
         m.max AS high,
         fit.code AS fit_code, fit.value AS fit_value, fit.total AS fit_total, fit.bad AS fit_bad,
         c.id IS NOT NULL AND m.id IS NOT NULL AND fit.code IS NULL AS passes
  FROM t
  LEFT JOIN clients AS c ON c.org_id = :org_id AND c.id = t.client_id AND c.deleted_at IS NULL
   AND (CAST(:patient_id AS uuid) IS NULL OR c.id = CAST(:patient_id AS uuid))
  LEFT JOIN outcome_markers AS m ON m.org_id = :org_id AND m.id = t.marker_id AND m.client_id = t.client_id
   AND m.deleted_at IS NULL
  {fit_join("m.instrument", "m.min", "m.max", "t.items", "t.value")}
), ok AS (
  SELECT chk.*, first_value(chk.i) OVER same AS first_i, held.id AS held_by,
         (chk.external_id IS NULL OR first_value(chk.i) OVER same = chk.i) AND held.id IS NULL AS writes
  FROM chk LEFT JOIN LATERAL (SELECT {identifiers.held_elsewhere(measurements, "chk")} AS id) AS held ON true
  WHERE chk.passes
  WINDOW same AS (PARTITION BY chk.source, chk.external_id ORDER BY chk.i)
), w AS (
  SELECT * FROM ok WHERE ok.writes
), ins AS (
  INSERT INTO measurements (org_id, id, client_id, marker_id, value, items, observed_at, observed_offset, source,
                            external_id, note, compartment, first_version_by)
  SELECT :org_id, id, client_id, marker_id, fit_value, items, observed_at, observed_offset, source, external_id,
         note, :compartment, :who
  FROM w
  ON CONFLICT (org_id, source, external_id, compartment) WHERE external_id IS NOT NULL DO NOTHING
  RETURNING id, client_id, version
)"""
# Each new version as ``records``' CTEs take it (``v``: record_id, version, client_id, data): the change feed's row and
# the outbox's events. No history row: a new measurement's version 1 is its row, read as the history would hold it
# (``models.records.RECORD_VERSIONS``, migration 0017) until a change supersedes it (the table's trigger then writes
# it to the history), so ``data`` is null here (no event of a new measurement reads it).
VERSIONS_CTE = """v AS (
  SELECT ins.id AS record_id, ins.version, ins.client_id, CAST(NULL AS jsonb) AS data FROM ins
)"""
_WRITE = text(f"""
WITH {ROWS_CTES}, {VERSIONS_CTE},
{FEED_CTE}, {OUTBOX_CTES}
SELECT chk.client_live, chk.marker_found, chk.instrument, chk.low, chk.high, chk.fit_code,
       chk.fit_value, chk.fit_total, chk.fit_bad, ok.first_i, ok.held_by,
       ins.id IS NOT NULL AS created,
       CASE WHEN ok.writes AND ins.id IS NULL THEN
         (SELECT m.id FROM measurements m WHERE m.org_id = :org_id AND m.compartment = :compartment
            AND m.source = chk.source AND m.external_id = chk.external_id) END AS holder
FROM chk LEFT JOIN ok ON ok.i = chk.i LEFT JOIN ins ON ins.id = chk.id
ORDER BY chk.i
""")
# The records that took an item's (source, external_id) first, in the writer's compartment (a patient token's own;
# service.collections.identifiers), so a duplicate is only ever one the writer may see: for an item the unique
# index refused because of a record committed after the write's snapshot was taken (a concurrent batch).
_EXISTING = text(
    "SELECT id, source, external_id FROM measurements WHERE org_id = :org AND compartment = :compartment "
    "AND (source, external_id) IN (SELECT * FROM unnest(CAST(:sources AS text[]), CAST(:exts AS text[])))"
)
_NO_MARKER: dict[str, dict[Any, dict[str, Any]]] = {}  # ``bind_refs`` given none: the problem of a missing marker


async def _write(conn: AsyncConnection, who: Principal, rows: list[tuple[int, dict[str, Any]]]) -> list[Any]:
    """Checks and stores the rows (each given a new id); per row, in order, what the statement answers for it."""
    for (_, values), new_id in zip(rows, uuid7s(len(rows)), strict=True):
        values["id"] = new_id
    params = changes_params(who, measurements.name, "created")
    params.update(compartment=identifiers.compartment(who), org_wide=identifiers.ORG_WIDE, patient_id=who.patient_id,
                  rows=dumps([values if values.keys() == _STORED_KEYS else dict(zip(_STORED, _stored(values),
                                                                                     strict=True))
                              for _, values in rows]).decode())
    sql, names = compiled(conn, _WRITE)
    return list(await (await driver(conn)).fetch(sql, *[params[name] for name in names]))


async def _late_holders(conn: AsyncConnection, who: Principal, late: list[dict[str, Any]]) -> dict[Any, Any]:
    """For rows the unique index refused whose holder the statement's snapshot did not see, the holders, by key."""
    return {(r.source, r.external_id): r.id for r in (await conn.execute(_EXISTING, {
        "org": who.org_id, "compartment": identifiers.compartment(who),
        "sources": [v["source"] for v in late], "exts": [v["external_id"] for v in late]})).all()}


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
    rows = [(i, measurement_to_row(payload)) for i, payload in parsed]  # each body is its own dict: its row
    markers: dict[Any, dict[str, Any]] = {}
    created: list[tuple[int, dict[str, Any]]] = []
    late: list[tuple[int, dict[str, Any]]] = []
    duplicates_in_batch: dict[int, int] = {}
    for n, ((i, values), answer) in enumerate(zip(rows, await _write(conn, who, rows), strict=True), start=1):
        client_live, marker_found, instrument, low, high, code, value, total, bad, first, held_by, stored, holder = \
            answer
        marker = {"id": values["marker_id"], "client_id": values["client_id"], "instrument": instrument, "min": low,
                  "max": high}
        try:
            if not client_live:
                raise client_missing(values["client_id"])
            if not marker_found:
                bind_refs(measurements, values, _NO_MARKER, None)  # raises: no such marker of this client
            problem = fit_problem(marker, values["items"], values["value"], code, total, bad)
            if problem is not None:
                raise problem
        except DomainError as exc:
            results[i] = _error(i, exc)
            continue
        values["value"] = value  # an instrument's: its total
        if values["external_id"] is not None and first != n:
            duplicates_in_batch[i] = rows[first - 1][0]
        elif held_by is not None:  # another compartment's record, for the same client
            results[i] = {"index": i, "status": "duplicate", "id": held_by}
        elif stored:
            markers[values["marker_id"]] = marker
            created.append((i, values))
            results[i] = {"index": i, "status": "created", "id": values["id"]}
        elif holder is not None:
            results[i] = {"index": i, "status": "duplicate", "id": holder}
        else:
            late.append((i, values))
    if late:
        existing = await _late_holders(conn, who, [values for _, values in late])
        for i, values in late:
            results[i] = {"index": i, "status": "duplicate", "id": existing.get((values["source"],
                                                                                   values["external_id"]))}
    for i, first_index in duplicates_in_batch.items():
        results[i] = {"index": i, "status": "duplicate", "id": (results[first_index] or {}).get("id")}

    if created:
        audit_written(measurements.name, [v["id"] for _, v in created], [v["client_id"] for _, v in created],
                      "created")
        # The safety rules, for the batch (its markers as the statement read them, in this transaction, instrument
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
