"""What a read's audit row and its durable commit cost, and what the group commit saves (issue 25).

`.venv/bin/python -m bench.audit_commit [--concurrency 16] [--duration 5]`, on the bench database (`.data/bench`,
seeded as `python -m bench.run` seeds it, first if need be). Raw asyncpg, as the service role, W1's shape (a client
with its strengths, read by the limit twin's statement under the tenant's row-level security), ``concurrency`` tasks
for ``duration`` seconds each, one after the other in this order:

- ``no audit``: ``BEGIN`` + tenant, the read, ``COMMIT`` (what a read costs with nothing written);
- ``in the transaction``: the same with the audit row sent with ``COMMIT`` (the service before the group commit);
- ``group commit, n in flight``: the read as in ``no audit``, then the row written by the service's own
  ``GroupCommit`` (``service.audit.commits``; at most n commits under way) on the service's own engine, awaited
  before the next read as the service awaits it before answering;
- ``in the transaction, synchronous_commit off``: for reference only, not durable, not used.

Prints requests per second and the share of ``no audit`` of each, and the group commit's rows per commit.

Then W1 as the service sends it now, with no HTTP and no Python of the service's but what it takes to send the
statements, beside the limit twin in the same run (``--bound``; bench.run's W1, its ratio to the limit):

- ``limit twin``: ``bench.limit.W1`` as the owner, no tenant, transaction or audit (bench.run's limit twin);
- ``pinned read``: the service's own statement (``jsonread``'s for ``?include=strengths``, compiled as the service
  compiles it) on connections whose session holds the tenant, with the pinned connections' settings;
- ``pinned read, group commit``: the same, then the request's audit rows (one for the client, one for its
  strengths, as ``AuditTrail`` writes them) through the service's ``GroupCommit``, awaited before the next read as
  the service awaited it before answering until the seventeenth round;
- ``pinned read writing its audit rows``: the statement the service sends now, which also writes those rows (a
  data-modifying CTE, ``graphql.sql.audited_reads``) and commits them with the read, one read per statement (the
  service shares one among the reads that wait together, ``db.PinnedTenants.coalesced``).

Each is also priced in PostgreSQL's CPU per read (every backend and background process over the run). The last
figure's share of the limit twin's is the most W1's ratio to the limit could be if HTTP and every layer of
the service's Python but the audit's bookkeeping took no time at all: the ceiling of what work on that Python can
reach.

``--cost [--statements 3000]`` prices the same statements in PostgreSQL's CPU (every backend and background process,
``bench.env.postgres_cpu``), one at a time on one connection, so that nothing else runs beside them: the limit twin's
statement and the service's read (without its audit rows, then writing them), each ``statements`` times, then the
group commit's transaction (the one statement
``GroupCommit`` sends, ``commits.GROUPED``: ``audit_append`` with the rows, its own transaction) holding the audit
rows of 1, 8 and 16 reads. What a read's PostgreSQL side costs at the least: its statement and its share of a commit.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvloop

import service.domain.registry  # noqa: F401 - fills the collections registry
from bench.env import Database, postgres_cpu
from bench.limit import W1
from bench.raw import twin_pool
from bench.seed import ensure_seed
from service.audit import service as audit
from service.audit.commits import GroupCommit
from service.audit.service import AuditTrail, append_text
from service.auth.principal import Principal
from service.collections.jsonread import _json_read
from service.db import PINNED_SESSION_SETTINGS, begin_script, make_engine
from service.graphql.reads import note
from service.settings import Settings


def audit_rows(org: Any, clients: list[Any]) -> str:
    """The rows ``audit_append`` takes (migration 0016), as the service's trail writes them: a read's row for each
    client (also bench.idorder)."""
    return orjson.dumps([{
        "org_id": str(org), "app_id": "bench", "subject": "bench", "action": "read", "resource_type": "Client",
        "resource_ids": [str(client)], "client_ids": [str(client)], "outcome": "success", "status_code": None,
        "request_id": "bench-audit-commit", "remote_addr": "127.0.0.1", "method": "GET",
        "path": f"/v1/clients/{client}",
    } for client in clients]).decode()


async def _run(pool: asyncpg.Pool, body: Callable[[asyncpg.Connection | None], Awaitable[None]],
               concurrency: int, duration: float, hold: bool = True) -> float:
    stop = time.perf_counter() + duration
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            if hold:
                async with pool.acquire() as conn:
                    await body(conn)
            else:
                await body(None)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return done / (time.perf_counter() - start)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--data-dir", default=".data/bench")
    parser.add_argument("--bound", action="store_true", help="only W1's statements against the limit twin (above)")
    parser.add_argument("--cost", action="store_true", help="W1's statements in PostgreSQL's CPU, one at a time")
    parser.add_argument("--statements", type=int, default=3000, help="--cost: statements per run")
    parser.add_argument("--repeats", type=int, default=3, help="--bound, --cost: the runs in turn, this many times")
    parser.add_argument("--clients", type=int, default=2000, help="the seeded caseload's size (seeded if missing)")
    args = parser.parse_args(argv)
    db = Database.start(Path(args.data_dir))
    seed = await ensure_seed(db.owner_dsn, args.clients)  # bench.run's caseload, as it seeds it
    org, clients = seed.org_id, seed.client_ids[:500]
    engine = make_engine(db.app_dsn.replace("postgresql://", "postgresql+asyncpg://", 1), Settings())
    if args.bound or args.cost:
        await (bound if args.bound else cost)(db, engine, org, clients, args)
        await engine.dispose()
        return
    pool = await asyncpg.create_pool(db.app_dsn, min_size=args.concurrency, max_size=args.concurrency)
    groups = {n: GroupCommit(engine, in_flight=n) for n in (1, 2, 4)}
    begin = begin_script(org, None)

    async def read(conn: asyncpg.Connection) -> Any:
        await conn.execute(begin)
        client = random.choice(clients)
        await conn.fetchval(W1, org, client)
        return client

    async def no_audit(conn: asyncpg.Connection | None) -> None:
        assert conn is not None
        await read(conn)
        await conn.execute("COMMIT;")

    async def in_transaction(conn: asyncpg.Connection | None) -> None:
        assert conn is not None
        client = await read(conn)
        # as a write sends its rows with its COMMIT (AuditTrail.closing)
        await conn.execute(f"{append_text(org, audit_rows(org, [client]))};\nCOMMIT;")

    def grouped(group: GroupCommit) -> Callable[[asyncpg.Connection | None], Awaitable[None]]:
        async def body(_: asyncpg.Connection | None) -> None:
            async with pool.acquire() as conn:
                client = await read(conn)
                await conn.execute("COMMIT;")
            await group.write(org, audit_rows(org, [client]))
        return body

    async def not_durable(conn: asyncpg.Connection | None) -> None:
        assert conn is not None
        await conn.execute("SET synchronous_commit = off")
        try:
            await in_transaction(conn)
        finally:
            await conn.execute("RESET synchronous_commit")

    results: dict[str, float] = {}
    runs: list[tuple[str, Callable[[asyncpg.Connection | None], Awaitable[None]], GroupCommit | None]] = [
        ("no audit", no_audit, None), ("in the transaction", in_transaction, None),
        *((f"group commit, {n} in flight", grouped(g), g) for n, g in groups.items()),
        ("in the transaction, synchronous_commit off", not_durable, None)]
    for name, body, group in runs:
        before = group.commits if group else 0
        results[name] = await _run(pool, body, args.concurrency, args.duration, hold=group is None)
        extra = ""
        if group is not None:
            commits = group.commits - before
            extra = f"  ({results[name] * args.duration / max(commits, 1):.1f} rows per commit)"
        print(f"{name:45s} {results[name]:8.0f} req/s  {results[name] / results['no audit']:.2f} of no audit{extra}",
              flush=True)
    await pool.close()
    await engine.dispose()


def _w1_statement(engine: Any, who: Principal, audited: bool) -> tuple[str, Callable[[Any], list[Any]]]:
    """The service's W1 statement (``jsonread``'s for ``?include=strengths``, compiled as the service compiles it;
    ``audited``: the one that also writes the read's audit rows), and the arguments of one read of a client, as
    ``CompiledRead.fetch_one_of`` sends them (with ``audited``, the read's audit values, each a one-element array)."""
    sql, names, defaults = _json_read("clients", ("strengths",), audited).statement._compile(engine.dialect, False)

    def args_of(client: Any) -> list[Any]:
        values = {**defaults, "org_id": who.org_id, "patient_id": None, "ids": [client]}
        if audited:
            trail = AuditTrail(request_id="bench-audited", method="GET", path=f"/v1/clients/{client}",
                               remote="127.0.0.1")
            values.update({name: [value] for name, value in trail.read_values(who).items()})
        return [values[name] for name in names]

    return sql, args_of


async def bound(db: Database, engine: Any, org: Any, clients: list[Any], args: argparse.Namespace) -> None:
    """W1's statements as the service sends them, against the limit twin, in one run (see the module's doc)."""
    settings = db.settings
    who = Principal(org_id=org, app_id="bench", subject="bench")
    types = _json_read("clients", ("strengths",), False).types
    sql, args_of = _w1_statement(engine, who, False)
    audited_sql, audited_args_of = _w1_statement(engine, who, True)
    group = GroupCommit(engine)
    size = {"min_size": args.concurrency, "max_size": args.concurrency}
    limit_pool = await twin_pool(db.owner_dsn, settings, **size, session=PINNED_SESSION_SETTINGS)
    pinned = await twin_pool(db.app_dsn, settings, **size, tenant=org, session=PINNED_SESSION_SETTINGS)

    async def limit_twin(conn: asyncpg.Connection | None) -> None:
        assert conn is not None
        await conn.fetchval(W1, org, random.choice(clients))

    async def read(conn: asyncpg.Connection) -> AuditTrail:
        client = random.choice(clients)
        row = (await conn.fetch(sql, *args_of(client)))[0]
        if not row["ok"] or row["version"] is None:
            raise RuntimeError(f"the pinned read did not find client {client}")
        trail = AuditTrail(request_id="bench-bound", method="GET", path=f"/v1/clients/{client}?include=strengths",
                           remote="127.0.0.1")
        token = audit.begin(trail)  # what the group commit writes: the side channel noted, as a list page notes it
        try:
            note(types, row)
        finally:
            audit.end(token)
        return trail

    async def pinned_read(conn: asyncpg.Connection | None) -> None:
        assert conn is not None
        await read(conn)

    async def pinned_grouped(_: asyncpg.Connection | None) -> None:
        async with pinned.acquire() as conn:
            trail = await read(conn)
        rows = trail.grouped_rows(who)
        assert rows is not None
        await group.write(org, rows)

    async def pinned_audited(conn: asyncpg.Connection | None) -> None:
        assert conn is not None
        client = random.choice(clients)
        row = (await conn.fetch(audited_sql, *audited_args_of(client)))[0]
        if row["version"] is None or row["audited"] != 2:
            raise RuntimeError(f"the audited read did not find client {client}, or did not write its rows")

    runs: list[tuple[str, asyncpg.Pool, Callable[[asyncpg.Connection | None], Awaitable[None]], bool]] = [
        ("limit twin", limit_pool, limit_twin, True), ("pinned read", pinned, pinned_read, True),
        ("pinned read, group commit", pinned, pinned_grouped, False),
        ("pinned read writing its audit rows", pinned, pinned_audited, True)]
    shares: dict[str, list[float]] = {name: [] for name, *_ in runs}
    for repeat in range(args.repeats):  # the four in turn, each repeat's shares of its own limit twin's rate
        rates: dict[str, float] = {}
        for name, pool, body, hold in runs:
            before, pg = group.commits, postgres_cpu(db.data_dir)
            rates[name] = await _run(pool, body, args.concurrency, args.duration, hold=hold)
            pg = (postgres_cpu(db.data_dir) - pg) / (rates[name] * args.duration) * 1e3  # ms per read
            shares[name].append(rates[name] / rates["limit twin"])
            extra = f"  ({rates[name] * args.duration / max(group.commits - before, 1):.1f} reads per commit)" \
                if not hold else ""
            print(f"{repeat + 1}: {name:42s} {rates[name]:8.0f} req/s  {shares[name][-1]:.2f} of the limit twin, "
                  f"PostgreSQL {pg:.3f} ms of CPU per read{extra}", flush=True)
    for name, values in shares.items():
        print(f"median: {name:37s} {statistics.median(values):.2f} of the limit twin", flush=True)
    await limit_pool.close()
    await pinned.close()


async def cost(db: Database, engine: Any, org: Any, clients: list[Any], args: argparse.Namespace) -> None:
    """W1's statements and the group commit's transaction in PostgreSQL's CPU, one at a time (``--cost``)."""
    who = Principal(org_id=org, app_id="bench", subject="bench")
    sql, args_of = _w1_statement(engine, who, False)
    audited_sql, audited_args_of = _w1_statement(engine, who, True)
    one = {"min_size": 1, "max_size": 1, "session": PINNED_SESSION_SETTINGS}
    limit_pool = await twin_pool(db.owner_dsn, db.settings, **one)
    pinned = await twin_pool(db.app_dsn, db.settings, **one, tenant=org)

    async def limit_twin(conn: asyncpg.Connection, client: Any) -> None:
        await conn.fetchval(W1, org, client)

    async def service_read(conn: asyncpg.Connection, client: Any) -> None:
        await conn.fetch(sql, *args_of(client))

    async def audited_read(conn: asyncpg.Connection, client: Any) -> None:
        await conn.fetch(audited_sql, *audited_args_of(client))

    def rows_of(client: Any) -> str:  # a read's audit rows, as the service's trail writes them
        trail = AuditTrail(request_id="bench-cost", method="GET", path=f"/v1/clients/{client}?include=strengths",
                           remote="127.0.0.1")
        trail.seen("Client", client, client)
        trail.seen_many("Strength", [client], [client])
        rows = trail.grouped_rows(who)
        assert rows is not None
        return rows

    group = GroupCommit(engine)
    loop = asyncio.get_running_loop()
    n = args.statements
    for repeat in range(args.repeats):
        for name, pool, body in (("limit twin", limit_pool, limit_twin), ("service's read", pinned, service_read),
                                 ("service's read writing its audit rows", pinned, audited_read)):
            async with pool.acquire() as conn:
                for client in clients[:20]:  # warm: plans, caches
                    await body(conn, client)
                pg, wall = postgres_cpu(db.data_dir), time.perf_counter()
                for _ in range(n):
                    await body(conn, random.choice(clients))
                pg, wall = postgres_cpu(db.data_dir) - pg, time.perf_counter() - wall
            print(f"{repeat + 1}: {name:40s} PostgreSQL {pg / n * 1e3:.3f} ms of CPU per statement, "
                  f"{wall / n * 1e3:.3f} ms each", flush=True)
        for reads in (1, 8, 16):
            commits = max(n // 5 // reads * 2, 20)
            batches = [[(org, rows_of(random.choice(clients)), loop.create_future()) for _ in range(reads)]
                       for _ in range(commits)]
            pg = postgres_cpu(db.data_dir)
            for batch in batches:
                await group._commit(batch)
            pg = postgres_cpu(db.data_dir) - pg
            what = f"group commit of {reads} reads' rows"
            print(f"{repeat + 1}: {what:40s} PostgreSQL {pg / commits * 1e3:.3f} ms of CPU per commit, "
                  f"{pg / commits / reads * 1e3:.3f} per read", flush=True)
    await limit_pool.close()
    await pinned.close()


if __name__ == "__main__":
    uvloop.run(main())  # as bench.raw's twins run
