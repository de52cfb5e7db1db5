"""`python -m bench.rowcost`: what each kind of row a W3 batch writes costs PostgreSQL (issue 25).

On the bench's embedded PostgreSQL (``.data/bench``, seeded by ``bench.run``), raw asyncpg as the owner role (as
the limit twin: no row-level security, no tenant), ``--concurrency`` connections for ``--duration`` seconds per
variant, each transaction ``BEGIN``, the statements, ``COMMIT`` (durable, as the service's), 100 new
measurements of 100 clients' frequency markers per transaction, into W3's own caseload (``bench.run`` seeds
it; so does this, if it is missing). The variants add one kind of row at a time:

1. the measurements only (one ``INSERT ... SELECT FROM jsonb_array_elements ... ON CONFLICT DO NOTHING``, after
   the checks every item meets in the service's statement: a live client, a live marker of that client, the
   marker's rule, the first of its external id in the batch, none holding it in another compartment);
2. with their change-feed rows;
3. with the webhook outbox: the service's whole write statement (``measurement_batch._WRITE``), which writes
   outbox and delivery rows only for events an active subscription wants (the seeded organization has none, so
   this is the subscription lookup);
4. with the audit row (the service's audit ``INSERT``, one row naming the 100 records) in the same transaction.

Variants 1-2 are the service's write statement (``measurement_batch``'s and ``records``' parts) cut short. A batch
writes no history rows: a new measurement's first version is its own row (migration 0017).

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
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from bench.env import Database, postgres_cpu
from bench.seed import ensure_seed, frequency_markers
from service.audit.service import _APPEND as AUDIT_APPEND
from service.collections.identifiers import ORG_WIDE
from service.collections.records import FEED_CTE
from service.domain import measurement_batch
from service.domain.measurement_batch import ROWS_CTES, VERSIONS_CTE
from service.settings import PROJECT_ROOT


def _statement(*ctes: str) -> tuple[str, tuple[str, ...]]:
    """``WITH <ctes> SELECT count(*) FROM ins``: the service's write statement cut after ``ctes``, compiled as the
    service compiles it (its named parameters in the order the driver takes them)."""
    done = text(f"WITH {', '.join(ctes)}\nSELECT count(*) FROM ins").compile(dialect=PGDialect_asyncpg())
    return done.string, tuple(done.positiontup or ())


def _service_write() -> tuple[str, tuple[str, ...]]:
    done = measurement_batch._WRITE.compile(dialect=PGDialect_asyncpg())
    return done.string, tuple(done.positiontup or ())


def _uuid7() -> str:
    from service.collections.types import uuid7

    return str(uuid7())


async def _run(dsn: str, data_dir: Path, org: Any, pairs: list[tuple[Any, Any]], variant: str, seconds: float,
               concurrency: int) -> dict[str, float]:
    sql, names = {
        "measurements": _statement(ROWS_CTES),
        "+ change feed": _statement(ROWS_CTES, VERSIONS_CTE, FEED_CTE),
    }.get(variant) or _service_write()
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
        params = {"rows": body, "org_id": org, "compartment": ORG_WIDE, "org_wide": ORG_WIDE, "patient_id": None,
                  "collection": "measurements", "action": "created", "who": "rowcost",
                  "type_name": "measurement", "opened": False}
        async with conn.transaction():
            await conn.fetch(sql, *[params[name] for name in names])
            if variant == "+ audit row":
                await conn.execute(AUDIT_APPEND, org, orjson.dumps([{
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


VARIANTS = ("measurements", "+ change feed", "+ outbox (the service's write statement)", "+ audit row")


async def main(args: argparse.Namespace) -> None:
    data_dir = args.data_dir.resolve()
    db = Database.start(data_dir)
    # W3's own caseload (seeded as bench.run seeds it, if missing), which only W3 writes to: rows written into the
    # seeded organization would grow what W1, W2, W4 and W5 read (a few million measurements there took W5's
    # summary past the statement timeout).
    seed = await ensure_seed(db.owner_dsn, args.clients, purpose="W3")
    org = seed.org_id
    markers = await frequency_markers(db.owner_dsn, org)
    pairs = [(c, markers[c]) for c in sorted(markers, key=lambda c: markers[c])[:100]]
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
    p.add_argument("--clients", type=int, default=2000, help="the size of W3's caseload (bench.run's --clients)")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    asyncio.run(main(p.parse_args()))
