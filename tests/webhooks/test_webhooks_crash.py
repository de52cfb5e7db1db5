"""Webhooks through crashes and concurrency, with the real commands as subprocesses:
`strengths-api serve` killed with SIGKILL while deliveries are pending, and two `strengths-api worker`s at once."""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
from collections import Counter
from contextlib import asynccontextmanager
from typing import Any

import httpx

from service.auth.apps import create_app_record
from service.db import make_engine
from tests.support.factories import create
from tests.support.harness import AuthedClient, Database
from tests.support.servers import env_for, free_port, spawn, stop
from tests.support.webhooks import Receiver, eventually, subscribe

ALL = "system/*.cruds"


async def wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(300):
            assert proc.poll() is None, "the service exited"
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the service did not start")


async def new_org_app(db: Database) -> dict[str, Any]:
    org = await db.fetchval("INSERT INTO organizations (id, name) VALUES (gen_random_uuid(), 'Crash') RETURNING id")
    engine = make_engine(db.owner_url, db.settings(), pool=False)
    try:
        async with engine.begin() as conn:
            return await create_app_record(conn, org_id=org, name="crash test", scopes=ALL)
    finally:
        await engine.dispose()


@asynccontextmanager
async def client_of(base: str, creds: dict[str, Any]):
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
        r = await http.post("/oauth/token", data={"grant_type": "client_credentials", "scope": ALL},
                            headers={"Authorization": f"Basic {basic}"})
        assert r.status_code == 200, r.text
        yield AuthedClient(http, r.json()["access_token"])


async def deliveries(db: Database) -> list[Any]:
    return await db.fetch("SELECT id, status, attempts FROM webhook_deliveries ORDER BY created_at")


async def test_sigkill_while_deliveries_are_pending_loses_nothing(db):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    receiver = Receiver().start()
    receiver.stop()  # the receiver is down: its port refuses connections
    creds = await new_org_app(db)
    serve = spawn(["serve", "--port", str(port)], env_for(db))
    second = None
    try:
        await wait_healthy(base, serve)
        async with client_of(base, creds) as c:
            sub = await subscribe(c, receiver.url, ["strength.created", "client.created"])
            for _ in range(5):
                await create(c, "strengths")
        expected = 10  # five strengths, each with its client

        async def all_tried_and_failing() -> bool:
            rows = await deliveries(db)
            return len(rows) == expected and all(r["attempts"] >= 1 and r["status"] == "pending" for r in rows)

        for _ in range(300):
            if await all_tried_and_failing():
                break
            await asyncio.sleep(0.1)
        assert await all_tried_and_failing()
        serve.send_signal(signal.SIGKILL)
        serve.wait(10)
        before = {str(r["id"]): r["attempts"] for r in await deliveries(db)}

        receiver = Receiver(port=receiver.port).start()  # the receiver comes back, same address
        second = spawn(["serve", "--port", str(port)], env_for(db))
        await wait_healthy(base, second)
        await eventually(lambda: len({r.headers["webhook-id"] for r in receiver.ok()}) == expected, within=60)

        events = receiver.verified(sub["secret"])  # every one verified with the standardwebhooks package
        assert Counter(e["type"] for e in events) >= Counter({"strength.created": 5, "client.created": 5})
        # The webhook-ids received are exactly the deliveries that had already failed before the kill.
        assert {r.headers["webhook-id"] for r in receiver.received} == set(before)
        assert all(n >= 1 for n in before.values())

        async def all_delivered() -> bool:
            return all(r["status"] == "delivered" for r in await deliveries(db))

        for _ in range(100):
            if await all_delivered():
                break
            await asyncio.sleep(0.1)
        rows = await deliveries(db)
        assert all(r["status"] == "delivered" for r in rows)
        assert all(r["attempts"] > before[str(r["id"])] for r in rows)  # retried after the restart, same id
    finally:
        stop(serve)
        if second:
            stop(second)
        receiver.stop()


async def test_two_workers_deliver_each_event_once(db):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    receiver = Receiver().start()
    creds = await new_org_app(db)
    # The API alone (no dispatcher inside), then two dispatchers as `strengths-api worker`.
    serve = spawn(["serve", "--port", str(port)], {**env_for(db), "WEBHOOKS_DISPATCHER": "0"})
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await wait_healthy(base, serve)
        async with client_of(base, creds) as c:
            sub = await subscribe(c, receiver.url, ["strength.created", "client.created"])
            client = await create(c, "clients")
            for _ in range(40):
                await create(c, "strengths", client_id=client["id"])
        expected = 41
        assert len(await deliveries(db)) == expected
        assert receiver.received == []  # nothing dispatches inside this serve
        workers = [spawn(["worker"], env_for(db)) for _ in range(2)]
        await eventually(lambda: len(receiver.received) >= expected, within=60)
        await asyncio.sleep(1.0)  # time for any duplicate to show up
        ids = Counter(r.headers["webhook-id"] for r in receiver.received)
        assert len(ids) == expected
        assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
        assert len(receiver.verified(sub["secret"])) == expected
        assert all(w.poll() is None for w in workers)
    finally:
        for w in workers:
            stop(w)
        stop(serve)
        receiver.stop()


async def test_two_dispatchers_share_the_work_and_deliver_each_event_once(db):
    """In process, so each dispatcher's share can be counted: both claim work, no event goes out twice."""
    from service.webhooks.dispatcher import Dispatcher
    from tests.support.harness import Api
    from tests.support.webhooks import FAST

    receiver = Receiver(delay=0.02).start()
    settings = db.settings(**FAST)
    engines = [make_engine(db.app_url, settings) for _ in range(2)]
    counts = [0, 0]

    class Counting(Dispatcher):
        def __init__(self, engine: Any, index: int) -> None:
            super().__init__(engine, settings)
            self.index = index

        async def _attempt(self, row: Any) -> Any:
            outcome = await super()._attempt(row)
            # Deliveries, not attempts: on a loaded machine an attempt can time out and be retried.
            counts[self.index] += outcome.status == "delivered"
            return outcome

    dispatchers = [Counting(e, i) for i, e in enumerate(engines)]
    tasks: list[asyncio.Task[None]] = []
    try:
        async with Api.start(db, **{**FAST, "webhooks_dispatcher": False}) as api:
            org = await api.org()
            c = api.client(await api.token(org, ALL))
            sub = await subscribe(c, receiver.url, ["strength.created"])
            client = await create(c, "clients")
            for _ in range(60):
                await create(c, "strengths", client_id=client["id"])
        tasks = [asyncio.create_task(d.run_forever()) for d in dispatchers]
        await eventually(lambda: len(receiver.received) >= 60, within=60)
        await asyncio.sleep(0.5)
        ids = Counter(r.headers["webhook-id"] for r in receiver.received)
        assert len(ids) == 60
        assert max(ids.values()) == 1
        assert len(receiver.verified(sub["secret"])) == 60
        assert sum(counts) == 60
        assert min(counts) > 0, counts  # both took part
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for d in dispatchers:
            await d.aclose()
        for e in engines:
            await e.dispose()
        receiver.stop()
