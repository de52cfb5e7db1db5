"""A large Bulk Data export streams from PostgreSQL through `strengths-api worker` with flat memory: the worker
reads, maps and writes one page at a time, whatever the number of records.

The default is 3,000 patients (with a strength each) so the suite stays fast; BULK_EXPORT_MEMORY_RECORDS=100000
runs the full-size check. The worker's peak RSS and the export's throughput are printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import psutil

from tests.support.bulk import download, kick_off, wait_for_manifest
from tests.support.harness import Api
from tests.support.servers import env_for, spawn, stop

RECORDS = int(os.environ.get("BULK_EXPORT_MEMORY_RECORDS", "3000"))
LIMIT_MB = 300


async def test_export_keeps_worker_memory_flat(db):
    async with Api.start(db) as api:
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        for start in range(0, RECORDS, 1000):
            lines = []
            for i in range(start, min(RECORDS, start + 1000)):
                ext = {"external_id": f"urn:mem|{i}"}
                lines.append({"type": "client", "resource": {"display_name": f"Client {i}", "identifiers": [
                    {"system": "urn:mem", "value": str(i)}]}})
                lines.append({"type": "strength", "resource": {"client_id": ext, "domain": "relational",
                                                                "kind": "skill", "label": f"asks for help {i}"}})
            r = await c.post("/v1/bulk/import", content=b"".join(json.dumps(x).encode() + b"\n" for x in lines),
                             headers={"Content-Type": "application/x-ndjson"})
            assert r.status_code == 200
            assert '"error"' not in r.text
        status = await kick_off(c, _type="Patient,Observation")
        worker = spawn(["worker"], {**env_for(db), "BULK_EXPORT_POLL_SECONDS": "0.1", "BULK_EXPORT_PAGE_SIZE": "500",
                                    "BULK_EXPORT_RETRY_AFTER_SECONDS": "1"})
        peak = 0.0
        try:
            process = psutil.Process(worker.pid)
            started = time.monotonic()

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, process.memory_info().rss / 2**20)
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample())
            try:
                manifest = await wait_for_manifest(c, status, within=600)
            finally:
                sampler.cancel()
            elapsed = time.monotonic() - started
        finally:
            stop(worker)
        counts = {o["type"]: 0 for o in manifest["output"]}
        for o in manifest["output"]:
            counts[o["type"]] += o["count"]
        assert counts == {"Patient": RECORDS, "Observation": RECORDS}
        if RECORDS <= 5000:  # every line checked against the R4 models at the default size
            files = await download(c, manifest)
            assert len(files["Patient"]) == RECORDS
        print(f"\nexported {2 * RECORDS} resources in {elapsed:.1f} s ({2 * RECORDS / elapsed:.0f}/s), "
              f"worker peak RSS {peak:.0f} MB")
        assert peak < LIMIT_MB, f"worker peak RSS {peak:.0f} MB"
