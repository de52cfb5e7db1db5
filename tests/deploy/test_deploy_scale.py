"""Settings for running at scale (issue 13): the read-replica engine (DATABASE_READ_URL) serves bulk export, and
the PgBouncer transaction-mode setting (DB_STATEMENT_CACHE_SIZE=0) still serves every kind of request."""

from __future__ import annotations

import json
import os

from prometheus_client.parser import text_string_to_metric_families

from tests.support.harness import Api

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


async def test_bulk_export_reads_from_the_read_engine(db, server):
    replica = await server.clone(f"tmpl_{WORKER}", f"{db.name}_replica")  # a "replica" that is visibly behind
    try:
        async with Api.start(db, database_read_url=replica.app_url) as api:
            org = await api.org()
            c = api.client(await api.token(org, "system/*.cruds"))
            assert (await c.post("/v1/clients", json={"display_name": "On the primary"})).status_code == 201
            assert (await c.get("/v1/clients")).json()["data"]  # lists still read the primary
            r = await c.get("/v1/bulk/export", params={"types": "client"})
            assert r.status_code == 200
            assert r.text == ""  # the export read the replica, which has not seen the write
            families = {f.name: f for f in text_string_to_metric_families((await api.http.get("/metrics")).text)}
            pools = {s.labels["pool"] for s in families["db_pool_size"].samples}
            assert pools >= {"primary", "read"}
        async with Api.start(db) as api:  # no read URL: export reads the primary
            c = api.client(await api.token(org, "system/*.cruds"))
            r = await c.get("/v1/bulk/export", params={"types": "client"})
            docs = [json.loads(x) for x in r.text.splitlines()]
            assert [d["resource"]["display_name"] for d in docs] == ["On the primary"]
    finally:
        await server.drop(replica.name)


async def test_statement_cache_off_for_pgbouncer_transaction_mode(db):
    async with Api.start(db, db_statement_cache_size=0) as api:
        engine = api.app.state.ctx.engine
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        for i in range(3):  # the same statements again: nothing may be served from a cache
            r = await c.post("/v1/clients", json={"display_name": f"C{i}"})
            assert r.status_code == 201, r.text
            assert (await c.get(f"/v1/clients/{r.json()['id']}")).status_code == 200
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw._stmt_cache.get_max_size() == 0
