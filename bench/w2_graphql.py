"""W2: the dashboard GraphQL query's throughput, as a ratio to raw asyncpg executing the same statements.

    .venv/bin/python -m bench.w2_graphql [--seconds 10] [--concurrency 4] [--clients 20]

One process, one event loop: the app is driven in-process over ASGI (no HTTP server), so the figure is
the GraphQL stack's cost (parsing, validation, Strawberry execution, DataLoaders, SQLAlchemy, JSON)
against the database work alone. The raw side replays the exact statements and parameters the app
sent for one dashboard query (captured with before_cursor_execute), transaction by transaction, as the
service role on asyncpg connections, so row-level security costs both sides the same.

It also times what a compiled path would execute (COMPILED: the whole dashboard as one SQL statement
that builds the response JSON, the PostGraphile approach) and checks that its result equals GraphQL's.
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

from service.collections.repository import CompiledRead
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
    """The statements sent through SQLAlchemy (its events) and, in the same order, those CompiledRead sends on
    the driver connection (batch reads of relations), which SQLAlchemy's events do not see."""
    captured: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        captured.append((statement, parameters))

    original = CompiledRead.fetch

    async def recording(self: CompiledRead, conn: Any, who: Any, **params: Any) -> Any:
        sql, names, defaults = self._compile(conn.dialect, who.patient_id is not None)
        values = {**defaults, **params, "org_id": who.org_id, "patient_id": who.patient_id}
        captured.append((sql, [values[name] for name in names]))
        return await original(self, conn, who, **params)

    def stop() -> None:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        CompiledRead.fetch = original  # type: ignore[method-assign]

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    CompiledRead.fetch = recording  # type: ignore[method-assign]
    return captured, stop


def _transactions(statements: list[tuple[str, Any]]) -> list[list[tuple[str, tuple[Any, ...]]]]:
    """Each transaction of the app starts with set_tenant."""
    groups: list[list[tuple[str, tuple[Any, ...]]]] = []
    for sql, params in statements:
        if "set_config('app.org_id'" in sql or not groups:
            groups.append([])
        groups[-1].append((sql, tuple(params or ())))
    return groups


# What a compiled path would execute: the whole dashboard as one SQL statement building the JSON response
# (the shape of DASHBOARD), so the database does the nesting and Python only forwards bytes.
COMPILED = """
SELECT json_build_object('clients', json_build_object('edges', coalesce(json_agg(json_build_object('node',
  json_build_object('id', c.id, 'displayName', c.display_name, 'status', c.status,
    'strengths', json_build_object('edges', (
      SELECT coalesce(json_agg(json_build_object('node', json_build_object(
               'label', s.label, 'domain', s.domain, 'status', s.status)) ORDER BY s.id), '[]')
      FROM (SELECT * FROM strengths s WHERE s.org_id = $2 AND s.client_id = c.id AND s.deleted_at IS NULL
            ORDER BY s.id LIMIT 10) s)),
    'goals', json_build_object('edges', (
      SELECT coalesce(json_agg(json_build_object('node', json_build_object(
               'description', g.description, 'lifecycle', g.lifecycle, 'achievement', g.achievement,
               'strengths', (SELECT coalesce(json_agg(json_build_object('label', s2.label) ORDER BY s2.id), '[]')
                             FROM strengths s2 WHERE s2.org_id = $2 AND s2.id = ANY(g.strength_ids)
                             AND s2.deleted_at IS NULL),
               'milestones', json_build_object('edges', (
                 SELECT coalesce(json_agg(json_build_object('node', json_build_object(
                          'title', m.title, 'status', m.status, 'sequence', m.sequence)) ORDER BY m.id), '[]')
                 FROM (SELECT * FROM milestones m WHERE m.org_id = $2 AND m.goal_id = g.id
                       AND m.deleted_at IS NULL ORDER BY m.id LIMIT 10) m)))) ORDER BY g.id), '[]')
      FROM (SELECT * FROM goals g WHERE g.org_id = $2 AND g.client_id = c.id AND g.deleted_at IS NULL
            ORDER BY g.id LIMIT 10) g)),
    'outcomeMarkers', json_build_object('edges', (
      SELECT coalesce(json_agg(json_build_object('node', json_build_object(
               'name', o.name, 'unit', o.unit, 'direction', o.direction,
               'latestMeasurement', (SELECT json_build_object('value', x.value, 'observedAt', x.observed_at)
                                     FROM measurements x WHERE x.org_id = $2 AND x.marker_id = o.id
                                     AND x.deleted_at IS NULL ORDER BY x.observed_at DESC, x.id DESC LIMIT 1)))
             ORDER BY o.id), '[]')
      FROM (SELECT * FROM outcome_markers o WHERE o.org_id = $2 AND o.client_id = c.id AND o.deleted_at IS NULL
            ORDER BY o.id LIMIT 10) o))
  )) ORDER BY c.id), '[]')))
FROM (SELECT * FROM clients c WHERE c.org_id = $2 AND c.deleted_at IS NULL ORDER BY c.id LIMIT $1) c
"""


def _normal(value: Any) -> Any:
    """Numbers as floats; timestamps (formatted differently) and pageInfo (not compiled here) dropped."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if k not in ("observedAt", "pageInfo")}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


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
            cpu = time.process_time()
            graphql_rps = await _for(seconds, concurrency, graphql_once)
            cpu_ms = (time.process_time() - cpu) * 1000 / max(graphql_rps * seconds, 1)

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

                async def compiled_once(i: int) -> None:
                    conn = conns[i]
                    async with conn.transaction():
                        await conn.fetch(groups[0][0][0], *groups[0][0][1])  # set_tenant, as the app does
                        await conn.fetchval(COMPILED, page, org.id)

                graphql_data = (await api.http.post("/graphql", json=payload, headers=headers)).json()["data"]
                async with conns[0].transaction():
                    await conns[0].fetch(groups[0][0][0], *groups[0][0][1])
                    compiled_data = json.loads(await conns[0].fetchval(COMPILED, page, org.id))
                same = _normal(compiled_data) == _normal(graphql_data)
                await _for(2, concurrency, compiled_once)
                compiled_rps = await _for(seconds, concurrency, compiled_once)
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
        "graphql_cpu_ms_per_query": round(cpu_ms, 1),  # this process's CPU (app and ASGI client), less noisy
        "compiled_single_statement_per_second": round(compiled_rps, 1),
        "compiled_vs_raw": round(compiled_rps / raw_rps, 3),
        "compiled_result_equals_graphql": same,
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
