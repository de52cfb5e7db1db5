"""Abusive documents are refused while validating, before any resolver runs; batching and GET mutations
are refused; a request without a valid token is an HTTP 401."""

from __future__ import annotations

import re

import pytest

from service.graphql.context import GraphQLContext
from service.graphql.limits import MAX_COST
from tests.support.gqlkit import ALL, gql


@pytest.fixture
def resolver_calls(monkeypatch):
    """Every resolver checks its scope first, so no call here means no resolver ran."""
    calls: list[tuple[str, str]] = []
    original = GraphQLContext.require

    def spy(self, resource, perm):
        calls.append((resource, perm))
        return original(self, resource, perm)

    monkeypatch.setattr(GraphQLContext, "require", spy)
    return calls


@pytest.fixture
async def client(api):
    org = await api.org()
    return api.client(await api.token(org, ALL))


def nested(depth: int) -> str:
    """clients > edges > node > strengths > edges > node > client > strengths > ... (``depth`` levels)."""
    cycle = ["strengths", "edges", "node", "client"]
    names = ["clients", "edges", "node"] + [cycle[i % len(cycle)] for i in range(depth - 4)]
    inner = "id" if names[-1] in ("node", "client") else "__typename"
    for name in reversed(names):
        inner = f"{name} {{ {inner} }}"
    return f"{{ {inner} }}"


def refused(body: dict, fragment: str) -> None:
    assert body.get("data") is None, body
    assert any(fragment in e["message"] for e in body["errors"]), body


async def test_depth_20_refused(client, resolver_calls):
    body = await gql(client, nested(20))
    refused(body, "exceeds maximum operation depth")
    assert resolver_calls == []


async def test_normal_depth_accepted(client, resolver_calls):
    body = await gql(client, nested(9))
    assert "errors" not in body, body
    assert resolver_calls == [("Client", "s")]


async def test_500_aliases_refused(client, resolver_calls):
    aliases = " ".join(f'a{i}: clients {{ pageInfo {{ hasNextPage }} }}' for i in range(500))
    body = await gql(client, f"{{ {aliases} }}")
    refused(body, "aliases found")
    assert resolver_calls == []


async def test_500_aliases_spread_through_fragments_refused(client, resolver_calls):
    ten = " ".join(f'a{i}: clients {{ pageInfo {{ hasNextPage }} }}' for i in range(10))
    spreads = " ".join("...F" for _ in range(50))
    body = await gql(client, f"query {{ {spreads} }} fragment F on Query {{ {ten} }}")
    refused(body, "aliases found")
    assert resolver_calls == []


THREE_DEEP = """query($n: Int!) { clients(first: $n) { edges { node {
  goals(first: $n) { edges { node { milestones(first: $n) { edges { node { id } } } } } } } } } }"""


async def test_first_100000_nested_three_deep_refused(client, resolver_calls):
    literal = THREE_DEEP.replace("query($n: Int!)", "query").replace("$n", "100000")
    refused(await gql(client, literal), "more than")
    body = await gql(client, THREE_DEEP, {"n": 100000})
    refused(body, "more than")
    assert body["errors"][0]["extensions"] == {"code": "QUERY_TOO_COSTLY", "reason": "cost_limit", "limit": MAX_COST}
    assert resolver_calls == []


async def test_cost_counts_fragment_spreads(client, resolver_calls):
    frag = "fragment G on Goal { milestones(first: 500) { edges { node { id } } } }"
    spreads = " ".join(f"g{i}: goals(first: 100) {{ edges {{ node {{ ...G }} }} }}" for i in range(3))
    refused(await gql(client, f"{{ clients(first: 1) {{ edges {{ node {{ {spreads} }} }} }} }} {frag}"), "more than")
    assert resolver_calls == []


async def test_modest_nesting_accepted_and_oversized_page_is_bad_input(client):
    assert "errors" not in await gql(client, THREE_DEEP, {"n": 20})
    body = await gql(client, "{ clients(first: 501) { edges { node { id } } } }")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["reason"] == "invalid_page_size"


async def test_token_flood_refused(client, resolver_calls):
    fields = " ".join("__typename" for _ in range(6000))
    body = await gql(client, f"{{ {fields} }}")
    refused(body, "tokens")
    assert resolver_calls == []


async def test_batching_is_off(client):
    resp = await client.post("/graphql", json=[{"query": "{ __typename }"}, {"query": "{ __typename }"}])
    assert resp.status_code == 400


async def test_get_never_runs_queries_or_mutations(client):
    mutation = 'mutation { createClient(input: {displayName: "x"}) { id } }'
    for query in ("{ clients { edges { node { id } } } }", mutation):
        resp = await client.get("/graphql", params={"query": query})
        assert resp.status_code == 405, resp.text
        assert resp.headers["allow"] == "POST"
    listed = await gql(client, "{ clients { edges { node { id } } } }")
    assert listed["data"]["clients"]["edges"] == []


async def test_graphiql_is_served_without_a_cdn(api):
    page = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "https://" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) == 4
    for url in assets:
        resp = await api.http.get(url)
        assert resp.status_code == 200, url
        assert len(resp.content) > 1000
    assert (await api.http.get("/graphql/assets/..%2F..%2F__init__.py")).status_code == 404


async def test_missing_or_bad_token_is_http_401(api):
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}):
        resp = await api.http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_introspection_needs_a_token(api):
    resp = await api.http.post("/graphql", json={"query": "{ __schema { types { name } } }"})
    assert resp.status_code == 401


async def test_every_error_has_a_code(client):
    cases = {
        "{ clients { edges { node { nope } } } }": "GRAPHQL_VALIDATION_FAILED",
        "{ clients { ": "GRAPHQL_PARSE_FAILED",
    }
    for query, code in cases.items():
        body = await gql(client, query)
        assert body["errors"][0]["extensions"]["code"] == code, body
    body = await gql(client, "query($id: UUID!) { client(id: $id) { id } }", {"id": "not-a-uuid"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
