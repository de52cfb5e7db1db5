"""W2 in-process: the dashboard GraphQL query's Python CPU per query, and its throughput beside the limit twin's.

    .venv/bin/python -m bench.w2_graphql [--seconds 10] [--concurrency 4] [--clients 20] [--out FILE]

One process, one event loop: the app is driven in-process over ASGI (no HTTP server), so the CPU per query is the
GraphQL stack's (parsing and validation caches, the compiled statement's planning, execution or the whole-response
path, JSON, audit) plus the in-process client's, measured as this process's CPU time over the run. It is measured
twice: with the whole-response path (the default, ``GRAPHQL_COMPILED_RESPONSES``) and with the stock executor over
the same statements. Beside them, the limit twin's statement (bench/limit.py W2) run by raw asyncpg as the owner
role, and a check that it answers what GraphQL answers.

The caseload is the bench's own (bench/seed.py, the per-client size of W1-W7) at ``--clients`` clients, seeded once
into the bench's embedded PostgreSQL (``--data-dir``, .data/bench as for ``bench.run``) and reused; the app is built
by the service's factory on it and driven over ASGI. The bench does not import the tests: the query is
bench/queries/dashboard.graphql, which the GraphQL tests read too.

bench/results/w2_graphql.json keeps the figures of the previous implementation (DataLoaders and per-level prefetch,
by this script at c2330ed, under "before") and of the run after it, both on the caseload this script built then
through the REST API (one strength, one goal with two milestones and one marker measured twice per client, as
tests/support/gqlkit.py ``seed_caseload``): a run on the bench caseload is not comparable with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.env import Database, cli
from bench.limit import W2
from bench.seed import ensure_seed
from bench.workloads import GRAPHQL_DASHBOARD, WORKLOADS
from service.app import create_app
from service.settings import PROJECT_ROOT


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


async def _graphql(http: httpx.AsyncClient, headers: dict[str, str], payload: dict[str, Any], seconds: float,
                   concurrency: int) -> tuple[float, float]:
    """(queries per second, CPU ms per query) of this process."""
    async def once(_: int) -> None:
        resp = await http.post("/graphql", json=payload, headers=headers)
        if resp.status_code != 200 or "errors" in resp.json():
            raise RuntimeError(resp.text)

    await _for(2, concurrency, once)  # warm-up: caches, prepared statements, generic plans
    cpu = time.process_time()
    rps = await _for(seconds, concurrency, once)
    return rps, (time.process_time() - cpu) * 1000 / max(rps * seconds, 1)


async def run(seconds: float, concurrency: int, n_clients: int, page: int, data_dir: Path) -> dict[str, Any]:
    db = Database.start(data_dir)
    seed = await ensure_seed(db.owner_dsn, n_clients)
    creds = json.loads(cli(data_dir, "apps", "create", "--org", str(seed.org_id), "--name", "bench-w2",
                           "--scopes", WORKLOADS["W2"].scopes))
    # No background dispatcher nor export runner: the process's CPU is the queries'.
    settings = db.settings.model_copy(update={"webhooks_dispatcher": False, "bulk_export_runner": False,
                                              "public_url": "http://bench", "host": "bench", "port": 80})
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        resp = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(creds["client_id"], creds["client_secret"]))
        resp.raise_for_status()
        headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        payload = {"query": GRAPHQL_DASHBOARD, "variables": {"n": page}}
        figures = {}
        live = app.state.ctx.settings
        for whole in (True, False):
            live.graphql_compiled_responses = whole
            figures["whole_response" if whole else "stock_executor"] = await _graphql(
                http, headers, payload, seconds, concurrency)
        live.graphql_compiled_responses = True
        data = (await http.post("/graphql", json=payload, headers=headers)).json()
    conns = [await asyncpg.connect(db.owner_dsn) for _ in range(concurrency)]
    try:
        async def limit_once(i: int) -> None:
            await conns[i].fetchval(W2, seed.org_id, page)

        same = orjson.loads(await conns[0].fetchval(W2, seed.org_id, page)) == data
        await _for(2, concurrency, limit_once)
        limit_rps = await _for(seconds, concurrency, limit_once)
    finally:
        for conn in conns:
            await conn.close()
    (whole_rps, whole_cpu), (stock_rps, stock_cpu) = figures["whole_response"], figures["stock_executor"]
    return {
        "benchmark": "W2 dashboard GraphQL query in-process: Python CPU per query, and the limit twin",
        "caseload": "bench/seed.py", "clients": n_clients, "page_size": page, "concurrency": concurrency,
        "seconds": seconds,
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
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / ".data" / "bench")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.concurrency, args.clients, args.page, args.data_dir.resolve()))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
