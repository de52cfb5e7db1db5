"""Relations prefetched per level of a root connection (service/graphql/prefetch.py): the same answers, errors
and audit rows as the DataLoaders give, scope refusals per field as before, and one statement per relation and
level whatever the page's size."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest

from service.collections.repository import CompiledRead
from service.graphql import fields
from tests.gqlkit import ALL, DASHBOARD, gql, seed_caseload, statements_sent

# Fragments, aliases of one relation with other arguments, @skip / @include, variables and a cursor: the ways a
# document can name the relations a level selects.
TANGLED = """
query Tangled($n: Int!, $m: Int!, $skipMarkers: Boolean!, $after: String) {
  clients(first: $n) {
    edges { node {
      ...Who
      few: goals(first: 1) { edges { node { description milestones(first: $m) { edges { node { title } } } } } }
      goals(first: 10) {
        edges { cursor node { id strengths { label client { displayName } } } } pageInfo { hasNextPage }
      }
      ... on Client { outcomeMarkers @skip(if: $skipMarkers) { edges { node { name } } } }
      later: strengths(first: 5, after: $after) { edges { node { label } } }
      markers: outcomeMarkers @include(if: true) { edges { node { latestMeasurement { value client { id } } } } }
    } }
  }
}
fragment Who on Client { id displayName strengths(first: 2) { edges { node { label goal_free: client { id } } } } }
"""

SCOPES = {
    "all": ALL,
    "no strengths": "system/Client.rs system/Goal.rs system/Milestone.rs system/OutcomeMarker.rs "
                    "system/Measurement.rs",
    "no milestone search": "system/Client.rs system/Goal.rs system/Strength.rs system/Milestone.r "
                           "system/OutcomeMarker.rs system/Measurement.rs",
    "no measurements": "system/Client.rs system/Goal.rs system/Strength.rs system/Milestone.rs "
                       "system/OutcomeMarker.rs",
}


@pytest.fixture
async def caseload(api):
    org = await api.org()
    await seed_caseload(api, org, 6)
    return org


@contextmanager
def relation_reads() -> Any:
    """Count the batch reads of relations (CompiledRead statements; they bypass SQLAlchemy's events)."""
    calls: list[str] = []
    original = CompiledRead.fetch

    async def counted(self: CompiledRead, conn: Any, who: Any, **params: Any) -> Any:
        calls.append(self._compile(conn.dialect, who.patient_id is not None)[0])
        return await original(self, conn, who, **params)

    CompiledRead.fetch = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        CompiledRead.fetch = original  # type: ignore[method-assign]


def transactions(engine: Any) -> Any:
    """Count the transactions the service opens through SQLAlchemy (each starts with the tenant statement)."""
    return statements_sent(engine, lambda statement: "set_config('app.org_id'" in statement)


@contextmanager
def without_prefetch() -> Any:
    original = fields.prefetch

    async def nothing(*_: Any) -> None:
        return None

    fields.prefetch = nothing  # type: ignore[assignment]
    try:
        yield
    finally:
        fields.prefetch = original


def normal(body: dict[str, Any]) -> dict[str, Any]:
    """Errors in path order: DataLoaders and prefetched values report them in different orders."""
    errors = sorted(body.get("errors") or [], key=lambda e: [str(p) for p in e.get("path") or []])
    return {**body, "errors": errors}


async def last_seq(api: Any) -> int:
    return await api.db.fetchval("SELECT coalesce(max(seq), 0) FROM audit_events")  # type: ignore[no-any-return]


async def audit_rows(api: Any, after: int, until: int) -> list[tuple[Any, ...]]:
    rows = await api.db.fetch("SELECT * FROM audit_events WHERE seq > $1 AND seq <= $2", after, until)
    return sorted((r["resource_type"], r["action"], r["outcome"], sorted(r["resource_ids"]), sorted(r["client_ids"]))
                  for r in rows)


@pytest.mark.parametrize("scopes", list(SCOPES))
@pytest.mark.parametrize("document", ["dashboard", "tangled"])
async def test_prefetch_answers_as_the_dataloaders_do(api, caseload, scopes, document):
    c = api.client(await api.token(caseload, SCOPES[scopes]))
    query, variables = (DASHBOARD, {"n": 20}) if document == "dashboard" else \
        (TANGLED, {"n": 20, "m": 1, "skipMarkers": False, "after": None})
    if document == "tangled":  # a real cursor: the strengths after the first of some client
        first = await gql(api.client(await api.token(caseload, ALL)),
                          "{ clients(first: 1) { edges { node { strengths(first: 1) { edges { cursor } } } } } }")
        variables["after"] = first["data"]["clients"]["edges"][0]["node"]["strengths"]["edges"][0]["cursor"]
    engine = api.app.state.ctx.engine
    with transactions(engine) as plain:
        await gql(c, "{ clients(first: 20) { edges { node { id } } } }")
    start = await last_seq(api)
    with relation_reads() as reads, transactions(engine) as opened:
        prefetched = await gql(c, query, variables)
    middle = await last_seq(api)
    with without_prefetch():
        loaded = await gql(c, query, variables)
    end = await last_seq(api)
    assert normal(prefetched) == normal(loaded)
    assert await audit_rows(api, start, middle) == await audit_rows(api, middle, end)
    assert middle > start
    if scopes == "all":
        assert "errors" not in prefetched, prefetched
        assert reads
        assert len(opened) == len(plain), "every relation was prefetched in the page's transaction"


async def test_a_refused_relation_is_refused_per_field_and_not_read(api, caseload):
    c = api.client(await api.token(caseload, SCOPES["no strengths"]))
    with relation_reads() as reads:
        body = await gql(c, DASHBOARD, {"n": 20})
    paths = sorted(tuple(e["path"]) for e in body["errors"])
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    assert {p[-1] for p in paths} == {"strengths"}
    assert len([p for p in paths if len(p) == 5]) == 6  # clients.edges.N.node.strengths, for each client
    assert len([p for p in paths if len(p) == 9]) == 6  # ... goals.edges.0.node.strengths, for each goal
    for edge in body["data"]["clients"]["edges"]:
        assert edge["node"]["strengths"] is None
        assert edge["node"]["goals"]["edges"][0]["node"]["milestones"]["edges"]  # the rest is there
    assert not any("FROM strengths" in sql for sql in reads)


async def test_one_statement_per_relation_and_level_whatever_the_page_size(api, caseload):
    c = api.client(await api.token(caseload, ALL))
    counts = {}
    for size in (1, 6):
        with relation_reads() as reads:
            body = await gql(c, DASHBOARD, {"n": size})
        assert "errors" not in body, body
        assert len(body["data"]["clients"]["edges"]) == size
        counts[size] = len(reads)
    # client: strengths, goals, markers; goal: strengths, milestones; marker: latest measurement
    assert counts == {1: 6, 6: 6}


async def test_invalid_arguments_are_refused_per_field_as_before(api, caseload):
    """Prefetch leaves a relation with invalid arguments to its resolver, which refuses it for each record."""
    c = api.client(await api.token(caseload, ALL))
    body = await gql(c, "{ clients(first: 3) { edges { node { goals(first: 0) { edges { node { id } } } } } } }")
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    assert [e["path"][-1] for e in body["errors"]] == ["goals"] * 3
