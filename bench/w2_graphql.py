"""W2 in-process: the dashboard GraphQL query's Python CPU per query, and its throughput beside the limit twin's.

    .venv/bin/python -m bench.w2_graphql [--seconds 10] [--concurrency 4] [--clients 20] [--out FILE]

One process, one event loop: the app is driven in-process over ASGI (no HTTP server), so the CPU per query is the
GraphQL stack's (parsing and validation caches, the compiled statement's planning, execution or the whole-response
path, JSON, audit) plus the in-process client's, measured as this process's CPU time over the run. It is measured
twice: with the whole-response path (the default, ``GRAPHQL_COMPILED_RESPONSES``) and with the stock executor over
the same statements. Beside them, the limit twin's statement (bench/limit.py W2) run by raw asyncpg as the owner
role, and a check that it answers what GraphQL answers.

Figures of the previous implementation (DataLoaders and per-level prefetch), by this script at c2330ed on the same
caseload: bench/results/w2_graphql.json keeps the latest run and, under "before", that one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.limit import W2
from service.settings import PROJECT_ROOT
from tests.support.gqlkit import ALL, DASHBOARD, seed_caseload
from tests.support.harness import Api, TestServer


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


async def _graphql(api: Api, headers: dict[str, str], payload: dict[str, Any], seconds: float,
                   concurrency: int) -> tuple[float, float]:
    """(queries per second, CPU ms per query) of this process."""
    async def once(_: int) -> None:
        resp = await api.http.post("/graphql", json=payload, headers=headers)
        if resp.status_code != 200 or "errors" in resp.json():
            raise RuntimeError(resp.text)

    await _for(2, concurrency, once)  # warm-up: caches, prepared statements, generic plans
    cpu = time.process_time()
    rps = await _for(seconds, concurrency, once)
    return rps, (time.process_time() - cpu) * 1000 / max(rps * seconds, 1)


async def run(seconds: float, concurrency: int, n_clients: int, page: int) -> dict[str, Any]:
    server = TestServer.start(PROJECT_ROOT / ".data" / "bench")
    server.make_template("bench_w2_tmpl")
    await server.drop("bench_w2")
    db = await server.clone("bench_w2_tmpl", "bench_w2")
    try:
        async with Api.start(db) as api:
            org = await api.org("Bench")
            await seed_caseload(api, org, n_clients)
            headers = {"Authorization": f"Bearer {await api.token(org, ALL)}"}
            payload = {"query": DASHBOARD, "variables": {"n": page}}
            settings = api.app.state.ctx.settings
            figures = {}
            for whole in (True, False):
                settings.graphql_compiled_responses = whole
                figures["whole_response" if whole else "stock_executor"] = await _graphql(
                    api, headers, payload, seconds, concurrency)
            settings.graphql_compiled_responses = True
            data = (await api.http.post("/graphql", json=payload, headers=headers)).json()
            conns = [await asyncpg.connect(db.dsn()) for _ in range(concurrency)]
            try:
                async def limit_once(i: int) -> None:
                    await conns[i].fetchval(W2, org.id, page)

                same = orjson.loads(await conns[0].fetchval(W2, org.id, page)) == data
                await _for(2, concurrency, limit_once)
                limit_rps = await _for(seconds, concurrency, limit_once)
            finally:
                for conn in conns:
                    await conn.close()
    finally:
        await server.drop("bench_w2")
    (whole_rps, whole_cpu), (stock_rps, stock_cpu) = figures["whole_response"], figures["stock_executor"]
    return {
        "benchmark": "W2 dashboard GraphQL query in-process: Python CPU per query, and the limit twin",
        "clients": n_clients, "page_size": page, "concurrency": concurrency, "seconds": seconds,
        "graphql_queries_per_second": round(whole_rps, 1), "graphql_cpu_ms_per_query": round(whole_cpu, 2),
        "stock_executor_queries_per_second": round(stock_rps, 1),
        "stock_executor_cpu_ms_per_query": round(stock_cpu, 2),
        "limit_twin_per_second": round(limit_rps, 1), "ratio_to_limit": round(whole_rps / limit_rps, 3),
        "limit_twin_answers_as_graphql": same,
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
