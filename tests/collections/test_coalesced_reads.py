"""Reads by id that arrive together share a statement on the pinned connections (``db.PinnedTenants.coalesced``):
reads of one organization, patient and shape asked for while ``DB_COALESCED_IN_FLIGHT`` statements are under way
(or in the same turn of the event loop) go in one statement over their ids; each is answered from its own record's
row, with its own status and ETag, and audited alone. Through HTTP (and ``/metrics``), against PostgreSQL; the last
tests drive the coalescing itself, for what HTTP cannot time: a read cancelled while it waits, a statement that fails.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from tests.support.audit import audit_rows, events
from tests.support.factories import client_with
from tests.support.fastread import READER
from tests.support.gqlkit import statements_on_the_wire
from tests.support.harness import Api
from tests.support.metrics import families, value

COALESCED = "db_coalesced_reads_per_statement"


async def _metric(api: Api, name: str) -> float:
    return value(families((await api.http.get("/metrics")).text)[COALESCED], name)


async def test_reads_that_arrive_together_share_a_statement_each_answered_and_audited_alone(db):
    async with Api.start(db, db_pinned_pool_size=2, db_coalesced_in_flight=1) as api:
        org = await api.org("A")
        writer = api.client(await api.token(org, "system/*.cruds"))
        made = [await client_with(writer, ("strengths",)) for _ in range(6)]
        gone, _ = await client_with(writer, ())
        assert (await writer.delete(f"/v1/clients/{gone['id']}")).status_code == 204
        reader = api.client(await api.token(org, READER))
        assert (await reader.get(f"/v1/clients/{made[0][0]['id']}")).status_code == 200  # the token's first use
        asks = [(c["id"], 200) for c, _ in made] + [(made[0][0]["id"], 200), (gone["id"], 410),
                                                   (str(uuid.uuid4()), 404)]
        rids = [uuid.uuid4().hex for _ in asks]
        statements, reads = await _metric(api, f"{COALESCED}_count"), await _metric(api, f"{COALESCED}_sum")
        with statements_on_the_wire(api.app.state.ctx.pinned.engine) as sent:
            answers = await asyncio.gather(*(
                reader.get(f"/v1/clients/{cid}?include=strengths", headers={"X-Request-Id": rid})
                for (cid, _), rid in zip(asks, rids, strict=True)))
            await asyncio.sleep(0)
        # fewer statements than reads, each carrying the reads that waited for it
        assert 1 <= len([q for q in sent if "app_org()" in q]) < len(asks), sent
        assert await _metric(api, f"{COALESCED}_sum") - reads == len(asks)
        assert await _metric(api, f"{COALESCED}_count") - statements < len(asks)
        by_id = {c["id"]: (c, kids) for c, kids in made}
        for (cid, status), rid, resp in zip(asks, rids, answers, strict=True):
            assert resp.status_code == status, (cid, resp.text)
            rows = await audit_rows(api, rid)
            if status != 200:
                assert resp.headers["content-type"].startswith("application/problem+json")
                assert cid in resp.json()["detail"]
                assert [r for r in rows if r["outcome"] == "success"] == []
                continue
            client, kids = by_id[cid]
            body = resp.json()
            assert body["id"] == cid
            assert body["display_name"] == client["display_name"]
            assert [s["id"] for s in body["strengths"]] == [s["id"] for s in kids["strengths"]]
            assert resp.headers["etag"] == f'W/"{body["version"]}"'
            # its own record and children only, not those of the reads it shared a statement with
            cuid = uuid.UUID(cid)
            assert [(r["resource_type"], r["resource_ids"], r["client_ids"]) for r in rows] == [
                ("Client", [cuid], [cuid]), ("Strength", [uuid.UUID(s["id"]) for s in kids["strengths"]], [cuid])]


async def test_reads_of_other_organizations_and_patients_never_share_a_statement(db):
    """The reads of two organizations and of a patient's app, all at once: each answered as its own token alone may
    be (another organization's record, or another patient's, is a 404), each audited in its own organization."""
    async with Api.start(db, db_pinned_pool_size=2, db_coalesced_in_flight=1) as api:
        a, b = await api.org("A"), await api.org("B")
        (ca, _), (ca2, _) = [await client_with(api.client(await api.token(a, "system/*.cruds")), ("strengths",))
                             for _ in range(2)]
        (cb, _), = [await client_with(api.client(await api.token(b, "system/*.cruds")), ("strengths",))]
        readers = {"A": api.client(await api.token(a, READER)), "B": api.client(await api.token(b, READER)),
                   "patient": api.client(await api.token(a, "patient/Client.r patient/Strength.s",
                                                         patient=uuid.UUID(ca["id"])))}
        asks = [("A", ca, 200), ("B", ca, 404), ("patient", ca, 200), ("A", cb, 404), ("B", cb, 200),
                ("patient", ca2, 404), ("A", ca2, 200), ("B", ca2, 404), ("patient", cb, 404)]
        for who in readers:  # each token's first use (a transaction)
            await readers[who].get(f"/v1/clients/{ca['id']}")
        for _ in range(3):
            rids = [uuid.uuid4().hex for _ in asks]
            answers = await asyncio.gather(*(
                readers[who].get(f"/v1/clients/{client['id']}?include=strengths", headers={"X-Request-Id": rid})
                for (who, client, _), rid in zip(asks, rids, strict=True)))
            for (who, client, status), rid, resp in zip(asks, rids, answers, strict=True):
                assert resp.status_code == status, (who, client["id"], resp.text)
                if status == 404:
                    assert client["display_name"] not in resp.text
                    continue
                assert resp.json()["display_name"] == client["display_name"]
                rows = await audit_rows(api, rid)
                assert {r["org_id"] for r in rows} == {b.id if who == "B" else a.id}
                assert {tuple(r["client_ids"]) for r in rows} == {(uuid.UUID(client["id"]),)}
        assert [e for e in await events(api, outcome="success", action="read", org_id=b.id)
                if uuid.UUID(ca["id"]) in e["client_ids"] or uuid.UUID(ca2["id"]) in e["client_ids"]] == []


# What HTTP cannot time: the coalescing itself, on the service's own pinned connections, with a statement of the
# tests' own (its parameter the array of the waiting reads' items; it sleeps so that others wait behind it).
SLOW = "SELECT x, pg_sleep($1) FROM unnest($2::int[]) AS x"


async def test_a_read_cancelled_while_it_waits_leaves_the_others_statement_alone(db):
    async with Api.start(db, db_pinned_pool_size=2, db_coalesced_in_flight=1) as api:
        pinned = api.app.state.ctx.pinned
        tenant = (str(uuid.uuid4()), "")

        async def read(item: int) -> list[int]:
            rows = await pinned.lane(uuid.UUID(tenant[0]), None).coalesced(SLOW, (0.2, None), (1,), (item,))
            return sorted(r["x"] for r in rows)

        first = asyncio.create_task(read(1))
        await asyncio.sleep(0.05)  # its statement under way: the next reads wait for it
        waiting = [asyncio.create_task(read(i)) for i in (2, 3, 4)]
        await asyncio.sleep(0.01)
        waiting[0].cancel()
        assert await first == [1]
        assert await waiting[1] == [3, 4]
        assert await waiting[2] == [3, 4]
        with pytest.raises(asyncio.CancelledError):
            await waiting[0]
        assert pinned._waiting == {}
        assert pinned._running == {}


async def test_another_tenants_reads_do_not_wait_behind_a_statement_under_way(db):
    """``DB_COALESCED_IN_FLIGHT`` counts the statements of one tenant and shape: while one organization's statement
    is under way its next reads wait for it, and another organization's read runs at once beside it."""
    async with Api.start(db, db_pinned_pool_size=2, db_coalesced_in_flight=1) as api:
        pinned = api.app.state.ctx.pinned
        slow, other = uuid.uuid4(), uuid.uuid4()

        async def read(org: uuid.UUID, seconds: float, item: int) -> tuple[list[int], float]:
            rows = await pinned.lane(org, None).coalesced(SLOW, (seconds, None), (1,), (item,))
            return sorted(r["x"] for r in rows), time.perf_counter()

        first = asyncio.create_task(read(slow, 1.0, 1))
        await asyncio.sleep(0.2)  # its statement under way
        behind = asyncio.create_task(read(slow, 1.0, 2))
        beside = asyncio.create_task(read(other, 0, 3))
        (rows_beside, beside_done), (rows_first, first_done) = await beside, await first
        rows_behind, behind_done = await behind
        assert (rows_first, rows_beside, rows_behind) == ([1], [3], [2])
        assert beside_done < first_done < behind_done  # the other tenant's read did not wait; the same tenant's did
        assert pinned._running == {}
        assert pinned._waiting == {}


async def test_every_read_of_a_failed_statement_gets_its_error_and_the_next_statement_runs(db):
    async with Api.start(db, db_pinned_pool_size=1, db_coalesced_in_flight=1) as api:
        pinned = api.app.state.ctx.pinned
        lane = pinned.lane(uuid.uuid4(), None)
        failing = "SELECT 1 / (x - 2) AS y FROM unnest($1::int[]) AS x"
        results = await asyncio.gather(*(lane.coalesced(failing, (None,), (0,), (i,)) for i in (1, 2, 3)),
                                       return_exceptions=True)
        assert all(isinstance(r, asyncpg.DivisionByZeroError) for r in results), results
        rows = await lane.coalesced(failing, (None,), (0,), (3,))
        assert [r["y"] for r in rows] == [1]


async def test_the_reads_of_a_statement_cancelled_under_way_are_cancelled_and_the_next_statement_runs(db):
    """A shared statement cancelled while it runs (its task, as at shutdown) cancels its reads instead of leaving
    them waiting; its connection goes back to the pool and serves the next statement."""
    async with Api.start(db, db_pinned_pool_size=1, db_coalesced_in_flight=1) as api:
        pinned = api.app.state.ctx.pinned
        lane = pinned.lane(uuid.uuid4(), None)
        reads = [asyncio.create_task(lane.coalesced(SLOW, (1.0, None), (1,), (i,))) for i in (1, 2)]
        await asyncio.sleep(0.2)
        (statement,) = pinned._tasks
        statement.cancel()
        for read in reads:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(read, 5)
        rows = await asyncio.wait_for(lane.coalesced(SLOW, (0, None), (1,), (3,)), 5)
        assert [r["x"] for r in rows] == [3]
