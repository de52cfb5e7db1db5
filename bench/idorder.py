"""What a random primary key costs a table every request appends to, against a time-ordered one (migration 0015).

`.venv/bin/python -m bench.idorder [--rows 1000000] [--connections 8] [--transactions 300] [--batch 8]
[--repeats 3]`, on the bench database (`.data/bench`, started and migrated here). Two scratch copies of
``audit_events`` (its columns, defaults, identity and indexes), one whose ``id`` defaults to ``gen_random_uuid()``
and one to ``uuid_time_ordered()``, each preloaded with ``rows`` rows. Each measured run starts with a
``CHECKPOINT`` (the state every ``checkpoint_timeout`` brings back), then ``connections`` connections each commit
``transactions`` transactions of ``batch`` rows, each written by the INSERT ``audit_append`` runs (migration 0016:
the rows as one JSON parameter, read by ``jsonb_to_recordset``), aimed at the copy. Reported per row, medians of the
repeats (the two tables alternate): PostgreSQL's CPU (``env.postgres_cpu``), the WAL written
(``pg_current_wal_lsn()``), and rows per second. The copies are dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.audit_commit import audit_rows
from bench.env import Database, postgres_cpu

DATA_DIR = Path(".data/bench")
TABLES = {"random (gen_random_uuid)": ("bench_ids_random", "gen_random_uuid()"),
          "time-ordered (uuid_time_ordered)": ("bench_ids_ordered", "uuid_time_ordered()")}


async def _prepare(su: asyncpg.Connection, org: uuid.UUID, rows: int) -> None:
    for table, default in TABLES.values():
        await su.execute(f"DROP TABLE IF EXISTS {table}")
        await su.execute(f"CREATE TABLE {table} (LIKE audit_events INCLUDING DEFAULTS INCLUDING IDENTITY "
                         "INCLUDING INDEXES)")
        await su.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT {default}")
        # A day of rows before now, in time order (the time-ordered ids follow ``at``; the random ones do not).
        await su.execute(
            f"INSERT INTO {table} (org_id, action, outcome, resource_ids, client_ids, at) "
            "SELECT $1, 'read', 'success', ARRAY[gen_random_uuid()], ARRAY[gen_random_uuid()], "
            f"clock_timestamp() - interval '1 day' + g * (interval '1 day' / {rows}) "
            f"FROM generate_series(1, {rows}) AS g", org)
        await su.execute(f"VACUUM ANALYZE {table}")


# The INSERT ``audit_append`` runs (migration 0016), into a copy of the table instead.
_COLUMNS = ("org_id uuid, app_id text, subject text, action text, resource_type text, resource_ids uuid[], "
            "client_ids uuid[], outcome text, status_code int, request_id text, remote_addr text, method text, "
            "path text")
_NAMES = ", ".join(c.split()[0] for c in _COLUMNS.split(", "))


async def _run(su: asyncpg.Connection, conns: list[asyncpg.Connection], table: str, org: uuid.UUID,
               transactions: int, batch: int) -> dict[str, float]:
    sql = f"INSERT INTO {table} ({_NAMES}) SELECT {_NAMES} FROM jsonb_to_recordset(CAST($1 AS jsonb)) AS t({_COLUMNS})"

    async def one(conn: asyncpg.Connection) -> None:
        for _ in range(transactions):
            async with conn.transaction():
                await conn.execute(sql, audit_rows(org, [uuid.uuid4() for _ in range(batch)]))

    await su.execute("CHECKPOINT")
    lsn = await su.fetchval("SELECT pg_current_wal_lsn()")
    cpu, start = postgres_cpu(DATA_DIR), time.perf_counter()
    await asyncio.gather(*(one(conn) for conn in conns))
    elapsed, cpu = time.perf_counter() - start, postgres_cpu(DATA_DIR) - cpu
    wal = await su.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)", lsn)
    written = len(conns) * transactions * batch
    return {"pg_cpu_us_per_row": cpu / written * 1e6, "wal_bytes_per_row": float(wal) / written,
            "rows_per_s": written / elapsed}


async def measure(rows: int, connections: int, transactions: int, batch: int, repeats: int) -> dict[str, Any]:
    db = Database.start(DATA_DIR)
    org = uuid.uuid4()
    su = await asyncpg.connect(db.superuser_dsn)
    conns = [await asyncpg.connect(db.superuser_dsn) for _ in range(connections)]
    try:
        await _prepare(su, org, rows)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in TABLES}
        for _ in range(repeats):
            for name, (table, _default) in TABLES.items():
                runs[name].append(await _run(su, conns, table, org, transactions, batch))
        sizes = {name: await su.fetchval(f"SELECT pg_size_pretty(pg_relation_size('{table}_pkey'))")
                 for name, (table, _default) in TABLES.items()}
    finally:
        for table, _default in TABLES.values():
            await su.execute(f"DROP TABLE IF EXISTS {table}")
        for conn in [su, *conns]:
            await conn.close()
    return {name: {**{key: statistics.median(run[key] for run in results) for key in results[0]},
                   "primary_key_size": sizes[name]} for name, results in runs.items()}


def report(results: dict[str, Any]) -> str:
    lines = ["| primary key | PostgreSQL CPU µs per row | WAL bytes per row | rows per second | key index |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['pg_cpu_us_per_row']:.1f} | {r['wal_bytes_per_row']:.0f} | "
                     f"{r['rows_per_s']:.0f} | {r['primary_key_size']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each table before the runs")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--transactions", type=int, default=300, help="per connection and run")
    parser.add_argument("--batch", type=int, default=8, help="rows per transaction")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(report(asyncio.run(measure(args.rows, args.connections, args.transactions, args.batch, args.repeats))))


if __name__ == "__main__":
    main()
