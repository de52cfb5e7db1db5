"""Helpers for the GraphQL tests: posting documents and building a caseload through REST."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from service.db import driver
from service.settings import PROJECT_ROOT
from tests.support.audit import events
from tests.support.harness import (
    ALL,  # noqa: F401 - re-exported
    Api,
    AuthedClient,
    Org,
)
from tests.support.oauth import register, secret_token


@contextmanager
def statements_sent(engine: Any, keep: Callable[[str], bool] = lambda _: True) -> Iterator[list[str]]:
    """The statements the service sends through SQLAlchemy (``keep`` chooses which) while the block runs."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if keep(statement):
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


def engines(api: Any) -> list[Any]:
    """The app's engines that serve requests: the primary and, when on, the pinned connections' (one-round-trip
    reads, ``service.db.PinnedTenants``)."""
    ctx = api.app.state.ctx
    return [ctx.engine, *([ctx.pinned.engine] if ctx.pinned is not None else [])]


@contextmanager
def statements_on_the_wire(*watched: Any) -> Iterator[list[str]]:
    """Every statement the service's connections send to PostgreSQL while the block runs, on each engine given:
    SQLAlchemy's (its ``before_cursor_execute`` event; it runs them as asyncpg prepared statements) and those sent on
    the asyncpg connection itself, BEGIN and COMMIT included (asyncpg's query loggers, which prepared statements
    bypass; asyncpg calls them soon after a statement, not at once: a test lets the loop run once before it ends the
    block)."""
    seen: list[str] = []
    logged: dict[int, Any] = {}

    def log(record: Any) -> None:
        seen.append(record.query)

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    def checkout(dbapi_conn: Any, *_: Any) -> None:
        raw = dbapi_conn.driver_connection
        if id(raw) not in logged:
            logged[id(raw)] = raw
            raw.add_query_logger(log)

    for engine in watched:
        event.listen(engine.sync_engine, "checkout", checkout)
        event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        for engine in watched:
            event.remove(engine.sync_engine, "checkout", checkout)
            event.remove(engine.sync_engine, "before_cursor_execute", before)
        for raw in logged.values():
            raw.remove_query_logger(log)


async def pinned_session_holds(api: Api, org_id: Any) -> None:
    """Behind the service's back, the pinned connection's session (a pool of one) made to hold ``org_id``'s tenant,
    while the pool still believes it holds the last reader's: the next read must find out and not answer from it."""
    async with api.app.state.ctx.pinned.engine.connect() as conn:
        await (await driver(conn)).execute(f"SELECT set_config('app.org_id', '{org_id}', false)")


@dataclass
class PinnedRead:
    """``read_on_the_wire``'s answer: the first answer, the one read on the pinned connection, its request id, and the
    statements sent on the pinned connection and on the primary while it was read."""

    first: Any
    resp: Any
    request_id: str
    pinned: list[str]
    primary: list[str]


async def read_on_the_wire(api: Api, reader: AuthedClient, url: str) -> PinnedRead:
    """``url`` read three times: the token's first use (it asks the database whether it is revoked: a transaction),
    then one that gives the pinned connection the tenant, then one whose statements are caught on the wire."""
    first = await reader.get(url)
    assert first.status_code == 200, first.text
    await reader.get(url)
    ctx = api.app.state.ctx
    rid = uuid.uuid4().hex
    with statements_on_the_wire(ctx.pinned.engine) as pinned, statements_on_the_wire(ctx.engine) as primary:
        resp = await reader.get(url, headers={"X-Request-Id": rid})
        await asyncio.sleep(0)  # asyncpg calls its query loggers soon after, not at once
    assert resp.status_code == 200, resp.text
    return PinnedRead(first, resp, rid, pinned, primary)


def audited(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a request's audit rows say it did, in a comparable order."""
    return sorted((r["resource_type"], r["resource_ids"], r["client_ids"], r["action"]) for r in rows)


async def pinned_and_plain_alike(api: Api, db: Any, org: Org, patient: Any, scopes: str, warm_url: str,
                                 read: Callable[[Api, AuthedClient], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """The same reads through ``api`` (pinned reads) and an app without pinned connections (``DB_PINNED_POOL_SIZE=0``),
    by a token of ``org`` (``scopes``, ``system/...``) and a patient's app (the same, ``patient/...``): ``read(app,
    reader)`` answers by key, and the two apps' answers must be equal. The pinned app's, keyed ``<who> <key>``."""
    answers: dict[tuple[str, str], Any] = {}
    async with Api.start(db, db_pinned_pool_size=0) as plain:
        assert plain.app.state.ctx.pinned is None
        for name, app in (("pinned", api), ("plain", plain)):
            readers = {"org": app.client(await app.token(org, scopes)),
                       "patient": app.client(await app.token(org, scopes.replace("system/", "patient/"),
                                                             patient=patient))}
            for who, reader in readers.items():
                assert (await reader.get(warm_url)).status_code == 200  # known not revoked: the pinned app reads pinned
                for key, answer in (await read(app, reader)).items():
                    answers[name, f"{who} {key}"] = answer
    for key in {k for _, k in answers}:
        assert answers["pinned", key] == answers["plain", key], key
    return {key: answer for (name, key), answer in answers.items() if name == "pinned"}


async def each_reader_its_own(api: Api, readers: dict[str, AuthedClient], url: str, expected: dict[str, set[str]],
                              orgs: dict[str, Any], other_org: Any) -> tuple[list[str], str]:
    """On an app with one pinned connection: ``url`` read by each reader in turn, twice (the second round all on the
    pinned connection): each lists exactly its ``expected`` ids under ``data`` and its audit rows are in its
    organization (``orgs``). Then reader ``A`` reads again after the connection's session was made to hold
    ``other_org``'s tenant behind the service's back, and still gets exactly its own: the statements that read sent
    on the pinned connection (the read, which found the other tenant; the tenant set; the read again), and its
    request id."""
    for _ in range(2):
        for who, reader in readers.items():
            rid = uuid.uuid4().hex
            resp = await reader.get(url, headers={"X-Request-Id": rid})
            assert resp.status_code == 200, resp.text
            assert {r["id"] for r in resp.json()["data"]} == expected[who], who
            assert {r["org_id"] for r in await events(api, request_id=rid)} == {orgs[who]}
    # A's read last, so the pool knows the session to hold A's tenant; then the session is made to hold another's
    assert (await readers["A"].get(url)).status_code == 200
    await pinned_session_holds(api, other_org)
    rid = uuid.uuid4().hex
    with statements_on_the_wire(api.app.state.ctx.pinned.engine) as sent:
        resp = await readers["A"].get(url, headers={"X-Request-Id": rid})
        await asyncio.sleep(0)
    assert resp.status_code == 200
    assert {r["id"] for r in resp.json()["data"]} == expected["A"]
    assert ["set_config('app.org_id', $1, false)" in q for q in sent] == [False, True, False]
    assert sent[0] == sent[2]
    assert {r["org_id"] for r in await events(api, request_id=rid)} == {orgs["A"]}
    return sent, rid


async def refused_or_unseen(api: Api, org: Org, other: Org, scopes: str, urls: list[str], hidden: str) -> list[Any]:
    """A token of ``org`` without the search scopes (``scopes`` with ``.s`` read as ``.r``) and one of ``other``
    (``scopes``), each used twice (its first use in a transaction, then pinned): the first gets a 403 problem on
    ``urls[0]`` that names nothing of the record ``hidden``; the second reads each of ``urls``, and no audit row of
    ``other`` names ``hidden``. The second's answers (200), for the caller to find empty."""
    no_search = api.client(await api.token(org, scopes.replace(".s", ".r")))
    foreign = api.client(await api.token(other, scopes))
    bodies = []
    for _ in range(2):
        resp = await no_search.get(urls[0])
        assert resp.status_code == 403
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert hidden not in resp.text
        for url in urls:
            resp = await foreign.get(url)
            assert resp.status_code == 200, resp.text
            bodies.append(resp.json())
    for row in await events(api, org_id=other.id):
        assert uuid.UUID(hidden) not in (row["resource_ids"] or []), row
    return bodies


async def revoked_after_pinned_reads(api: Api, org: Org, scopes: str, url: str) -> list[str]:
    """A token read twice (from then on on a pinned connection, known not revoked), then revoked: its next read of
    ``url`` must be a 401 naming the revocation. The statements the pinned connection was sent meanwhile."""
    creds = await register(api, org, scopes)
    token = await secret_token(api, creds)
    reader = api.client(token)
    for _ in range(2):
        assert (await reader.get(url)).status_code == 200
    revoked = await api.http.post("/oauth/revoke", data={"token": token},
                                  auth=(creds["client_id"], creds["client_secret"]))
    assert revoked.status_code == 200
    with statements_on_the_wire(api.app.state.ctx.pinned.engine) as pinned:
        refused = await reader.get(url)
        await asyncio.sleep(0)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    return pinned


async def gql(client: AuthedClient, query: str, variables: dict[str, Any] | None = None, *,
              status: int = 200) -> dict[str, Any]:
    resp = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    assert resp.status_code == status, resp.text
    return resp.json()  # type: ignore[no-any-return]


def error_codes(body: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    return [(e.get("extensions", {}).get("code"), e.get("extensions", {}).get("reason"))
            for e in body.get("errors") or []]


async def post(client: AuthedClient, path: str, body: dict[str, Any],
               answers: dict[str, bytes] | None = None) -> dict[str, Any]:
    resp = await client.post(f"/v1/{path}", json=body)
    assert resp.status_code == 201, resp.text
    if answers is not None:
        answers[path] = resp.content
    return resp.json()  # type: ignore[no-any-return]


async def one_of_each(api: Api, org: Org, answers: dict[str, bytes] | None = None) -> dict[str, str]:
    """One live record of every collection in ``org``: collection name -> id (``answers``: each create's response
    body, by collection, as the write's Python serializer wrote it)."""
    c = api.client(await api.token(org, ALL))
    made = functools.partial(post, answers=answers)
    now = datetime.now(UTC)
    client = await made(c, "clients", {"display_name": "Ana"})
    cid = client["id"]
    strength = await made(c, "strengths", {"client_id": cid, "domain": "relational", "kind": "skill",
                                           "label": "asks for help"})
    goal = await made(c, "goals", {"client_id": cid, "description": "Walk twice a week",
                                   "strength_ids": [strength["id"]]})
    marker = await made(c, "outcome-markers", {"client_id": cid, "kind": "frequency", "name": "walks",
                                               "unit": "/wk", "goal_id": goal["id"]})
    measurement = await made(c, "measurements", {"client_id": cid, "marker_id": marker["id"], "value": 2,
                                                 "observed_at": now.isoformat()})
    ids = {
        "clients": cid, "strengths": strength["id"], "goals": goal["id"], "outcome-markers": marker["id"],
        "measurements": measurement["id"],
        "protective-factors": (await made(c, "protective-factors", {"client_id": cid, "category": "routine",
                                                                   "description": "morning walk"}))["id"],
        "exceptions": (await made(c, "exceptions", {"client_id": cid, "problem": "worry",
                                                    "description": "smaller at work"}))["id"],
        "milestones": (await made(c, "milestones", {"client_id": cid, "goal_id": goal["id"], "title": "first walk",
                                                    "completion_criteria": "walked once"}))["id"],
        "strength-uses": (await made(c, "strength-uses", {"client_id": cid, "strength_id": strength["id"],
                                                          "situation": "hard day",
                                                          "occurred_at": (now - timedelta(days=1)).isoformat()}))["id"],
        "experiments": (await made(c, "experiments", {"client_id": cid, "strength_id": strength["id"],
                                                      "plan": "ask a friend on Monday"}))["id"],
        "safety-alerts": (await made(c, "safety-alerts", {"client_id": cid, "reason": "clinician concern"}))["id"],
    }
    return ids


# The bench's W2 document (bench/queries/dashboard.graphql), read by path: the bench measures what the tests check.
DASHBOARD = (PROJECT_ROOT / "bench" / "queries" / "dashboard.graphql").read_text()


async def seed_caseload(api: Api, org: Org, n: int = 20) -> list[str]:
    """``n`` clients, each with a strength, a goal built on it with two milestones, and a marker measured
    twice (so "latest" means something)."""
    c = api.client(await api.token(org, ALL))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for i in range(n):
        cid = (await post(c, "clients", {"display_name": f"Client {i:02d}"}))["id"]
        sid = (await post(c, "strengths", {"client_id": cid, "domain": "personal", "kind": "skill",
                                           "label": f"strength {i}"}))["id"]
        gid = (await post(c, "goals", {"client_id": cid, "description": f"goal {i}", "strength_ids": [sid]}))["id"]
        for step in (1, 2):
            await post(c, "milestones", {"client_id": cid, "goal_id": gid, "title": f"step {step}",
                                         "completion_criteria": "observable", "sequence": step})
        mid = (await post(c, "outcome-markers", {"client_id": cid, "kind": "frequency", "name": "walks",
                                                 "unit": "/wk", "goal_id": gid}))["id"]
        for week, value in ((0, 1), (1, 3)):
            await post(c, "measurements", {"client_id": cid, "marker_id": mid, "value": value,
                                           "observed_at": (start + timedelta(weeks=week)).isoformat()})
        ids.append(cid)
    return ids
