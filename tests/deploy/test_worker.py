"""`strengths-api worker`: its loops' heartbeat and the health server its Kubernetes probes call; the command runs
a Bulk Data export alone (no export runner in the API)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx

from service.db import make_engine
from service.fhir.export_runner import ExportRunner
from service.webhooks.dispatcher import Dispatcher
from service.worker import Heartbeat, health_server
from tests.support.bulk import download, kick_off, wait_for_manifest
from tests.support.factories import create
from tests.support.harness import Api
from tests.support.servers import env_for, free_port, spawn, stop, wait_ready


async def probe(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        return await http.get(path)


async def test_health_follows_the_heartbeat():
    now = [100.0]
    heartbeat = Heartbeat(clock=lambda: now[0])
    port = free_port()
    server = health_server(heartbeat, "127.0.0.1", port, stuck_after=30)
    try:
        assert (await probe(port, "/healthz")).status_code == 200
        assert (await probe(port, "/readyz")).status_code == 200
        heartbeat.beat("webhooks", ok=False)  # the database was unreachable: alive, not ready
        assert (await probe(port, "/healthz")).status_code == 200
        r = await probe(port, "/readyz")
        assert r.status_code == 503
        assert r.json()["loops"]["webhooks"]["last_ok"] is False
        heartbeat.beat("webhooks")
        now[0] += 31  # neither loop has beaten for 31 s: stuck
        heartbeat.beat("webhooks")
        r = await probe(port, "/healthz")
        assert r.status_code == 503
        assert r.json()["status"] == "stuck"
        assert r.json()["loops"]["bulk_export"]["seconds_since_beat"] == 31
        assert (await probe(port, "/nope")).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


class Stuck(ExportRunner):
    """A loop that, after its first iteration, waits forever (a hung statement, a lost wake-up)."""

    async def run_once(self) -> bool:
        if getattr(self, "ran", False):
            await asyncio.Event().wait()
        self.ran = True
        return await super().run_once()


async def test_a_stuck_loop_is_noticed(db):
    settings = db.settings(webhooks_poll_seconds=0.05, bulk_export_poll_seconds=0.05)
    engine = make_engine(db.app_url, settings)
    heartbeat = Heartbeat()
    port = free_port()
    server = health_server(heartbeat, "127.0.0.1", port, stuck_after=1.0)
    dispatcher = Dispatcher(engine, settings, beat=heartbeat.beater("webhooks"))
    tasks = [asyncio.create_task(dispatcher.run_forever()),
             asyncio.create_task(Stuck(engine, settings, beat=heartbeat.beater("bulk_export")).run_forever())]
    try:
        await asyncio.sleep(0.3)
        assert (await probe(port, "/healthz")).status_code == 200
        assert (await probe(port, "/readyz")).status_code == 200
        await asyncio.sleep(1.2)
        r = await probe(port, "/healthz")
        assert r.status_code == 503, r.text
        loops: dict[str, Any] = r.json()["loops"]
        assert loops["bulk_export"]["seconds_since_beat"] > 1.0
        assert loops["webhooks"]["seconds_since_beat"] < 1.0  # the dispatcher goes on
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.shutdown()
        server.server_close()
        await dispatcher.aclose()
        await engine.dispose()


async def test_worker_command_runs_an_export_alone_and_answers_its_probes(db):
    health = free_port()
    env = {**env_for(db), "WORKER_HEALTH_PORT": str(health), "HOST": "127.0.0.1",
           "BULK_EXPORT_POLL_SECONDS": "0.1", "BULK_EXPORT_RETRY_AFTER_SECONDS": "1"}
    async with Api.start(db) as api:  # an API without an export runner of its own
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        patient = await create(c, "clients")
        status = await kick_off(c)
        worker = spawn(["worker"], env)
        try:
            files = await download(c, await wait_for_manifest(c, status, within=90))
            assert [p["id"] for p in files["Patient"]] == [patient["id"]]
            await wait_ready(worker, f"http://127.0.0.1:{health}", within=10)
            assert (await probe(health, "/healthz")).status_code == 200
            assert (await probe(health, "/readyz")).json()["status"] == "ready"
        finally:
            worker.send_signal(signal.SIGTERM)
            stop(worker)
        assert worker.returncode == 0


async def test_sigterms_sent_while_the_worker_stops_neither_interrupt_nor_kill_it(db):
    """A supervisor, or a test's own stop, may send SIGTERM again while the worker stops. The first stops the loops
    at their next await; the others are ignored, rather than raised into the cleanup or, once the event loop has
    closed, left to the default action (killed by the signal). A burst of them, as the worker stops, each run:
    status 0."""
    env = {**env_for(db), "HOST": "127.0.0.1", "BULK_EXPORT_POLL_SECONDS": "0.1"}
    for gap in (0.0, 0.005):
        health = free_port()
        worker = spawn(["worker"], {**env, "WORKER_HEALTH_PORT": str(health)})
        try:
            await wait_ready(worker, f"http://127.0.0.1:{health}", within=30)
            deadline = time.monotonic() + 15
            while worker.poll() is None and time.monotonic() < deadline:
                worker.send_signal(signal.SIGTERM)
                await asyncio.sleep(gap)
        finally:
            stop(worker)
        assert worker.returncode == 0, (gap, worker.returncode)


async def test_worker_killed_mid_export_another_finishes_it(db):
    """`strengths-api worker` SIGKILLed in the middle of a job (held at a known point: the test locks the file
    it is appending to); a second worker takes the job over when the lease runs out and completes it, with the
    same transactionTime and every patient exactly once."""
    env = {**env_for(db), "BULK_EXPORT_POLL_SECONDS": "0.1", "BULK_EXPORT_PAGE_SIZE": "2",
           "BULK_EXPORT_LEASE_SECONDS": "2", "BULK_EXPORT_RETRY_AFTER_SECONDS": "1", "WEBHOOKS_DISPATCHER": "0"}
    async with Api.start(db) as api:
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        r = await c.post("/v1/bulk/import", content=b"".join(
            b'{"type": "client", "resource": {"display_name": "Client %d"}}\n' % i for i in range(200)),
            headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 200
        status = await kick_off(c, _type="Patient")
        first = spawn(["worker"], env)
        lock = await db.connect()
        try:
            for _ in range(600):
                if await db.fetchval("SELECT coalesce(sum(lines), 0) FROM bulk_export_files") > 0:
                    break
                await asyncio.sleep(0.01)
            tx = lock.transaction()
            await tx.start()
            await lock.execute("SELECT * FROM bulk_export_files FOR UPDATE")  # the worker's next append waits
            await asyncio.sleep(0.5)
            job = (await db.fetch("SELECT status, resources, transaction_time FROM bulk_export_jobs"))[0]
            assert job["status"] == "in-progress"
            assert 0 < job["resources"] < 200
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            await tx.rollback()
        finally:
            await lock.close()
            stop(first)
        second = spawn(["worker"], env)
        try:
            manifest = await wait_for_manifest(c, status, within=120)
        finally:
            stop(second)
        assert manifest["transactionTime"] == job["transaction_time"].isoformat().replace("+00:00", "Z")
        ids = [p["id"] for p in (await download(c, manifest))["Patient"]]
        assert len(ids) == len(set(ids)) == 200
        assert await db.fetchval("SELECT attempts FROM bulk_export_jobs") >= 2
