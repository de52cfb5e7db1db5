"""W2: the dashboard GraphQL query's throughput, as a ratio to raw asyncpg executing the same statements.

    .venv/bin/python -m bench.w2_graphql [--seconds 10] [--concurrency 4] [--clients 20]

One process, one event loop: the app is driven in-process over ASGI (no HTTP server), so the figure is
the GraphQL stack's cost (parsing, validation, Strawberry execution, DataLoaders, SQLAlchemy, JSON)
against the database work alone. The raw side replays the exact statements and parameters the app
sent for one dashboard query (captured with before_cursor_execute), transaction by transaction, as the
service role on asyncpg connections, so row-level security costs both sides the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event

from service.settings import PROJECT_ROOT
from tests.gqlkit import ALL, DASHBOARD, seed_caseload
from tests.harness import APP_ROLE, Api, TestServer


async def _for(seconds: float, concurrency: int, once: Any) -> float:
    """Operations per second with ``concurrency`` tasks calling ``once(task_index)`` until time is up."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await once(i)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / (time.perf_counter() - start)


def _capture(engine: Any) -> tuple[list[tuple[str, Any]], Any]:
    captured: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        captured.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return captured, lambda: event.remove(engine.sync_engine, "before_cursor_execute", before)


def _transactions(statements: list[tuple[str, Any]]) -> list[list[tuple[str, tuple[Any, ...]]]]:
    """Each transaction of the app starts with set_tenant."""
    groups: list[list[tuple[str, tuple[Any, ...]]]] = []
    for sql, params in statements:
        if "set_config('app.org_id'" in sql or not groups:
            groups.append([])
        groups[-1].append((sql, tuple(params or ())))
    return groups


async def run(seconds: float, concurrency: int, n_clients: int, page: int) -> dict[str, Any]:
    server = TestServer.start(PROJECT_ROOT / ".data" / "bench")
    server.make_template("bench_w2_tmpl")
    await server.drop("bench_w2")
    db = await server.clone("bench_w2_tmpl", "bench_w2")
    try:
        async with Api.start(db) as api:
            org = await api.org("Bench")
            await seed_caseload(api, org, n_clients)
            token = await api.token(org, ALL)
            headers = {"Authorization": f"Bearer {token}"}
            payload = {"query": DASHBOARD, "variables": {"n": page}}

            async def graphql_once(_: int) -> None:
                resp = await api.http.post("/graphql", json=payload, headers=headers)
                if resp.status_code != 200 or "errors" in resp.json():
                    raise RuntimeError(resp.text)

            engine = api.app.state.ctx.engine
            captured, stop = _capture(engine)
            await graphql_once(0)
            stop()
            groups = _transactions(captured)
            await _for(2, concurrency, graphql_once)  # warm-up
            graphql_rps = await _for(seconds, concurrency, graphql_once)

            conns = [await asyncpg.connect(db.dsn(APP_ROLE)) for _ in range(concurrency)]
            try:
                async def raw_once(i: int) -> None:
                    conn = conns[i]
                    for group in groups:
                        async with conn.transaction():
                            for sql, params in group:
                                await conn.fetch(sql, *params)

                await _for(2, concurrency, raw_once)
                raw_rps = await _for(seconds, concurrency, raw_once)
            finally:
                for conn in conns:
                    await conn.close()
    finally:
        await server.drop("bench_w2")
    return {
        "benchmark": "W2 dashboard GraphQL query vs raw asyncpg (same statements)",
        "clients": n_clients, "page_size": page, "concurrency": concurrency, "seconds": seconds,
        "statements_per_query": len(captured), "transactions_per_query": len(groups),
        "graphql_queries_per_second": round(graphql_rps, 1), "raw_asyncpg_per_second": round(raw_rps, 1),
        "ratio": round(graphql_rps / raw_rps, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--page", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.concurrency, args.clients, args.page))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
