"""The bench's limit twins (bench/limit.py) return the service's response for the same request: W1 and W2 the same
JSON, W3 the same results (index and status per item) for a batch like it, and rows stored the same way. Run on a
small bench seed in the test database: the service in-process, the twin's statement as the owner role."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from bench import limit
from bench.run import frequency_markers
from bench.seed import ensure_seed
from bench.workloads import WORKLOADS, Context, Variant
from tests.support.harness import Org

STORED = ("client_id", "marker_id", "value", "observed_at", "observed_offset", "source", "items", "note", "version")


async def setup(api: Any) -> Context:
    seed = await ensure_seed(api.db.dsn(), 4)
    scopes = " ".join(sorted({s for name in limit.LIMITS for s in WORKLOADS[name].scopes.split()}))
    token = await api.token(Org(seed.org_id, "bench"), scopes)
    return Context("http://testserver", token, seed.org_id, seed.client_ids,
                   markers=await frequency_markers(api.db.dsn(), seed.org_id))


async def service(api: Any, v: Variant) -> Any:
    r = v.request
    resp = await api.http.request(r.method, r.path, headers=r.headers, content=r.body)
    assert resp.status_code < 300, resp.text
    return resp.json()


async def twin(api: Any, name: str, ctx: Context, v: Variant) -> Any:
    [[(sql, args)]] = limit.plans(name, ctx, [v])
    conn = await api.db.connect()
    try:
        return orjson.loads(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def test_w1_and_w2_twins_answer_as_the_service(api):
    ctx = await setup(api)
    for name in ("W1", "W2"):
        variants = WORKLOADS[name].variants(ctx)
        for v in variants[:2]:
            assert await twin(api, name, ctx, v) == await service(api, v), name


async def test_w3_twin_answers_as_the_service_and_stores_the_same(api):
    ctx = await setup(api)
    batch = WORKLOADS["W3"].variants(ctx)[0]
    by_service = await service(api, batch)
    by_twin = await twin(api, "W3", ctx, batch)  # the same batch, its external ids suffixed by the twin's plan
    assert [(r["index"], r["status"]) for r in by_twin["results"]] == \
        [(r["index"], r["status"]) for r in by_service["results"]]
    assert {r["status"] for r in by_twin["results"]} == {"created"}
    rows = await api.db.fetch(f"SELECT id, {', '.join(STORED)} FROM measurements WHERE id = ANY($1::uuid[])",
                              [UUID(r["id"]) for r in by_service["results"] + by_twin["results"]])
    stored = {str(r["id"]): tuple(r[c] for c in STORED) for r in rows}
    assert [stored[r["id"]] for r in by_twin["results"]] == [stored[r["id"]] for r in by_service["results"]]
