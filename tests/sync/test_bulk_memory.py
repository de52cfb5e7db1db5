"""A long NDJSON import streams through a live server with flat memory (issue 8).

The default is 3,000 lines so the suite stays fast; BULK_MEMORY_LINES=100000 runs the full-size check.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import psutil

from tests.support.servers import free_port

LINES = int(os.environ.get("BULK_MEMORY_LINES", "3000"))
LIMIT_MB = 300


async def test_streaming_import_keeps_memory_flat(api):
    org = await api.org()
    creds = await api.register_app(org, "system/*.cruds")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": api.db.app_url, "MIGRATION_DATABASE_URL": api.db.owner_url,
           "PORT": str(port), "HOST": "127.0.0.1", "PUBLIC_URL": f"http://127.0.0.1:{port}"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "service.cli", "serve", env=env,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=None) as http:
            for _ in range(200):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            tok = (await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                   auth=(creds["client_id"], creds["client_secret"]))).json()["access_token"]
            server = psutil.Process(proc.pid)
            samples: list[tuple[int, float]] = []
            sent = 0

            async def body():
                nonlocal sent
                for start in range(0, LINES, 500):
                    lines = [{"type": "client", "resource": {"display_name": f"Imported {i}",
                                                             "identifiers": [{"system": "urn:mem", "value": str(i)}]}}
                             for i in range(start, min(LINES, start + 500))]
                    sent = start + len(lines)
                    yield b"".join(json.dumps(x).encode() + b"\n" for x in lines)

            async def watch(done: asyncio.Event):
                while not done.is_set():
                    samples.append((sent, server.memory_info().rss / 2**20))
                    await asyncio.sleep(0.25)

            done = asyncio.Event()
            watcher = asyncio.create_task(watch(done))
            started = time.monotonic()
            statuses: dict[str, int] = {}
            async with http.stream("POST", "/v1/bulk/import", content=body(),
                                   headers={"Authorization": f"Bearer {tok}",
                                            "Content-Type": "application/x-ndjson"}) as resp:
                assert resp.status_code == 200
                async for line in resp.aiter_lines():
                    if line:
                        status = json.loads(line)["status"]
                        statuses[status] = statuses.get(status, 0) + 1
            elapsed = time.monotonic() - started
            done.set()
            await watcher
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    assert statuses == {"created": LINES}
    peak = max(mb for _, mb in samples)
    early = [mb for n, mb in samples if n >= LINES * 0.2]
    growth = max(early) - early[0] if early else 0.0
    print(f"{LINES} lines in {elapsed:.1f} s ({LINES / elapsed:.0f} lines/s); peak RSS {peak:.0f} MB; "
          f"growth after the first 20%: {growth:.1f} MB")
    assert peak < LIMIT_MB
    assert growth < 40
