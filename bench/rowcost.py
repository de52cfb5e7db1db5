"""`python -m bench.rowcost`: what each kind of row a W3 batch writes costs PostgreSQL (issue 25).

On the bench's embedded PostgreSQL (``.data/bench``, seeded by ``bench.run``), raw asyncpg as the owner role (as
the limit twin: no row-level security, no tenant), ``--concurrency`` connections for ``--duration`` seconds per
variant, each transaction ``BEGIN``, the statements, ``COMMIT`` (durable, as the service's), 100 new
measurements of 100 clients' frequency markers per transaction. The variants add one kind of row at a time:

1. the measurements only (one ``INSERT ... SELECT FROM jsonb_array_elements ... ON CONFLICT DO NOTHING``);
2. with their history rows (the snapshot built by the statement, as ``measurement_batch`` builds it);
3. with their change-feed rows;
4. with the webhook outbox: the service's whole write statement (``measurement_batch._WRITE``), which writes
   outbox and delivery rows only for events an active subscription wants (the seeded organization has none, so
   this is the subscription lookup);
5. with the audit row (the service's audit ``INSERT``, one row naming the 100 records) in the same transaction.

Per variant: transactions (batches) per second and PostgreSQL's CPU per batch (the postmaster's process tree);
the difference between two lines is what the added rows cost. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from bench.env import Database
from bench.rls import postgres_cpu
from service.domain.measurement_batch import _iso
from service.settings import PROJECT_ROOT

_ITEMS = """t AS (
  SELECT e.j, r.* FROM jsonb_array_elements($1::jsonb) AS e(j),
       jsonb_to_record(e.j) AS r(id uuid, client_id uuid, marker_id uuid, value float8, items smallint[],
                                 observed_at timestamptz, observed_offset smallint, source text, external_id text,
                                 note text)
), ins AS (
  INSERT INTO measurements (org_id, id, client_id, marker_id, value, items, observed_at, observed_offset, source,
                            external_id, note, compartment)
  SELECT $2, id, client_id, marker_id, value, items, observed_at, observed_offset, source, external_id, note,
         '00000000-0000-0000-0000-000000000000'
  FROM t
  ON CONFLICT (org_id, source, external_id, compartment) WHERE external_id IS NOT NULL DO NOTHING
  RETURNING id, client_id, version, created_at, updated_at
)"""
_HISTORY = f""", v AS (
  SELECT ins.id AS record_id, ins.version, ins.client_id,
         (t.j - 'observed_offset') || jsonb_build_object('created_at', {_iso("ins.created_at")},
           'updated_at', {_iso("ins.updated_at")}, 'version', ins.version, 'deleted_at', NULL) AS data
  FROM ins JOIN t USING (id)
), h AS (
  INSERT INTO history (org_id, collection, record_id, version, client_id, action, data, changed_by)
  SELECT $2, 'measurements', record_id, version, client_id, 'created', data, 'rowcost' FROM v
)"""
_FEED = """, c AS (
  INSERT INTO changes (org_id, collection, record_id, client_id, action, version)
  SELECT $2, 'measurements', record_id, client_id, 'created', version FROM v
)"""
_END = "\nSELECT count(*) FROM ins"


def _service_write() -> tuple[str, tuple[str, ...]]:
    from service.domain import measurement_batch

    done = measurement_batch._WRITE.compile(dialect=PGDialect_asyncpg())
    return done.string, tuple(done.positiontup or ())


_AUDIT = ("INSERT INTO audit_events (org_id, app_id, subject, action, resource_type, resource_ids, client_ids, "
          "outcome, status_code, request_id, remote_addr, method, path) SELECT org_id, app_id, subject, action, "
          "resource_type, resource_ids, client_ids, outcome, status_code, request_id, remote_addr, method, path "
          "FROM jsonb_to_recordset(CAST($1 AS jsonb)) AS t(org_id uuid, app_id text, subject text, action text, "
          "resource_type text, resource_ids uuid[], client_ids uuid[], outcome text, status_code int, "
          "request_id text, remote_addr text, method text, path text)")


def _uuid7() -> str:
    from service.collections.types import uuid7

    return str(uuid7())


async def _run(dsn: str, data_dir: Path, org: Any, pairs: list[tuple[Any, Any]], variant: str, seconds: float,
               concurrency: int) -> dict[str, float]:
    service_sql, names = _service_write()
    nonce = secrets.token_hex(4)
    counter = iter(range(10**9))
    stop = time.monotonic() + seconds

    def rows() -> list[dict[str, Any]]:
        n = next(counter)
        return [{"id": _uuid7(), "client_id": str(c), "marker_id": str(m), "value": float((n + i) % 15),
                 "items": None, "observed_at": "2026-10-01T08:30:00+02:00", "observed_offset": 120,
                 "source": "bench-rowcost", "external_id": f"rc.{nonce}.{n}.{i}", "note": None}
                for i, (c, m) in enumerate(pairs)]

    async def one(conn: asyncpg.Connection) -> None:
        batch = rows()
        body = orjson.dumps(batch).decode()
        async with conn.transaction():
            if variant == "measurements":
                await conn.fetch(f"WITH {_ITEMS}{_END}", body, org)
            elif variant == "+ history":
                await conn.fetch(f"WITH {_ITEMS}{_HISTORY}{_END}", body, org)
            elif variant == "+ change feed":
                await conn.fetch(f"WITH {_ITEMS}{_HISTORY}{_FEED}{_END}", body, org)
            else:
                params = {"rows": body, "org_id": org, "compartment": "00000000-0000-0000-0000-000000000000",
                          "collection": "measurements", "action": "created", "who": "rowcost",
                          "type_name": "measurement", "opened": False}
                await conn.fetch(service_sql, *[params[name] for name in names])
                if variant == "+ audit row":
                    await conn.execute(_AUDIT, orjson.dumps([{
                        "org_id": str(org), "app_id": "rowcost", "subject": "rowcost", "action": "create",
                        "resource_type": "Measurement", "resource_ids": [r["id"] for r in batch],
                        "client_ids": [r["client_id"] for r in batch], "outcome": "success", "status_code": 200,
                        "request_id": secrets.token_hex(16), "remote_addr": "127.0.0.1", "method": "POST",
                        "path": "/v1/measurements/batch"}]).decode())

    async def worker(done: list[int]) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            while time.monotonic() < stop:
                await one(conn)
                done[0] += 1
        finally:
            await conn.close()

    done = [0]
    cpu0, t0 = postgres_cpu(data_dir), time.monotonic()
    await asyncio.gather(*[worker(done) for _ in range(concurrency)])
    cpu, elapsed = postgres_cpu(data_dir) - cpu0, time.monotonic() - t0
    return {"batches_per_s": done[0] / elapsed, "pg_cpu_ms_per_batch": 1000 * cpu / max(done[0], 1)}


VARIANTS = ("measurements", "+ history", "+ change feed", "+ outbox (the service's write statement)", "+ audit row")


async def main(args: argparse.Namespace) -> None:
    data_dir = args.data_dir.resolve()
    db = Database.start(data_dir)
    conn = await asyncpg.connect(db.owner_dsn)
    try:
        org = await conn.fetchval("SELECT org_id FROM outcome_markers WHERE kind = 'frequency' GROUP BY org_id "
                                  "ORDER BY count(*) DESC LIMIT 1")
        pairs = [(r[0], r[1]) for r in await conn.fetch(
            "SELECT client_id, id FROM outcome_markers WHERE org_id = $1 AND kind = 'frequency' "
            "AND deleted_at IS NULL ORDER BY id LIMIT 100", org)]
    finally:
        await conn.close()
    print(f"{len(pairs)} items per batch, concurrency {args.concurrency}, {args.duration:g} s per variant, "
          f"{args.repeats} repeat(s)")
    print("| variant | batches/s | PostgreSQL CPU ms/batch |")
    print("|---|---:|---:|")
    for variant in VARIANTS:
        runs = [await _run(db.owner_dsn, data_dir, org, pairs, variant, args.duration, args.concurrency)
                for _ in range(args.repeats)]
        rps = sorted(r["batches_per_s"] for r in runs)[len(runs) // 2]
        cpu = sorted(r["pg_cpu_ms_per_batch"] for r in runs)[len(runs) // 2]
        print(f"| {variant} | {rps:.0f} | {cpu:.2f} |", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / ".data" / "bench")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    asyncio.run(main(p.parse_args()))
