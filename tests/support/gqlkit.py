"""Helpers for the GraphQL tests: posting documents and building a caseload through REST."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from service.db import driver
from service.settings import PROJECT_ROOT
from tests.support.harness import (
    ALL,  # noqa: F401 - re-exported
    Api,
    AuthedClient,
    Org,
)


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
