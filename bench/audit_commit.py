"""What a read's audit row and its durable commit cost, and what the group commit saves (issue 25).

`.venv/bin/python -m bench.audit_commit [--concurrency 16] [--duration 5]`, on the bench database (`.data/bench`,
seeded by `python -m bench.run` first). Raw asyncpg, as the service role, W1's shape (a client with its strengths,
read by the limit twin's statement under the tenant's row-level security), ``concurrency`` tasks for ``duration``
seconds each, one after the other in this order:

- ``no audit``: ``BEGIN`` + tenant, the read, ``COMMIT`` (what a read costs with nothing written);
- ``in the transaction``: the same with the audit row sent with ``COMMIT`` (the service before the group commit);
- ``group commit, n in flight``: the read as in ``no audit``, then the row written by the service's own
  ``GroupCommit`` (``service.audit.commits``; at most n commits under way) on the service's own engine, awaited
  before the next read as the service awaits it before answering;
- ``in the transaction, synchronous_commit off``: for reference only, not durable, not used.

Prints requests per second and the share of ``no audit`` of each, and the group commit's rows per commit.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.env import Database
from bench.limit import W1
from service.audit.commits import GroupCommit
from service.audit.service import _INSERT
from service.db import begin_script, literal, make_engine
from service.settings import Settings


def audit_rows(org: Any, clients: list[Any]) -> str:
    """The parameter of the service's audit INSERT (``_INSERT``): a read's row for each client (also bench.idorder)."""
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
    args = parser.parse_args(argv)
    db = Database.start(Path(args.data_dir))
    owner = await asyncpg.connect(db.owner_dsn)
    org = await owner.fetchval("SELECT id FROM organizations WHERE name LIKE 'bench:%' ORDER BY name LIMIT 1")
    clients = [r[0] for r in await owner.fetch("SELECT id FROM clients WHERE org_id = $1 LIMIT 500", org)]
    await owner.close()
    if org is None:
        raise SystemExit("no bench organization: run `python -m bench.run` once to seed it")
    pool = await asyncpg.create_pool(db.app_dsn, min_size=args.concurrency, max_size=args.concurrency)
    engine = make_engine(db.app_dsn.replace("postgresql://", "postgresql+asyncpg://", 1), Settings())
    groups = {n: GroupCommit(engine, _INSERT, in_flight=n) for n in (1, 2, 4)}
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
        await conn.execute(_INSERT.replace("$1", literal(audit_rows(org, [client]))) + ";\nCOMMIT;")

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


if __name__ == "__main__":
    asyncio.run(main())
