"""The dashboard query: batched loading (statement count independent of page size) and a third-party
client (gql) running it and a mutation with a bearer token."""

from __future__ import annotations

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport

from service.settings import PROJECT_ROOT
from tests.support.gqlkit import ALL, DASHBOARD, gql, seed_caseload, statements_sent


@pytest.fixture
async def caseload(api):
    org = await api.org()
    await seed_caseload(api, org, 20)
    return org


async def test_statement_count_does_not_grow_with_page_size(api, caseload):
    c = api.client(await api.token(caseload, ALL))
    counts = {}
    for size in (5, 50):
        with statements_sent(api.app.state.ctx.engine) as statements:
            body = await gql(c, DASHBOARD, {"n": size})
        assert "errors" not in body, body
        edges = body["data"]["clients"]["edges"]
        assert len(edges) == min(size, 20)
        for edge in edges:
            node = edge["node"]
            goal = node["goals"]["edges"][0]["node"]
            assert len(goal["milestones"]["edges"]) == 2
            assert goal["strengths"][0]["label"].startswith("strength")
            assert node["outcomeMarkers"]["edges"][0]["node"]["latestMeasurement"]["value"] == 3
        counts[size] = len(statements)
    print(f"dashboard SQL statements: {counts}")
    assert counts[5] == counts[50]
    # through SQLAlchemy: authentication's revocation check; the query's whole selection is one compiled statement
    # in the operation's transaction, on the driver connection (tests/graphql/test_graphql_compiled.py counts every
    # statement sent, and that they do not grow with the page or the nesting)
    assert counts[50] < 20  # fewer statements than clients on the page


async def test_gql_client_runs_dashboard_and_mutation(api, caseload):
    token = await api.token(caseload, ALL)
    sdl = (PROJECT_ROOT / "schema" / "schema.graphql").read_text()
    transport = HTTPXAsyncTransport(
        url="http://testserver/graphql", transport=httpx.ASGITransport(app=api.app),
        headers={"Authorization": f"Bearer {token}"},
    )
    async with Client(transport=transport, schema=sdl) as session:  # validates documents against our SDL
        page = await session.execute(GraphQLRequest(DASHBOARD, variable_values={"n": 20}))
        assert len(page["clients"]["edges"]) == 20
        assert page["clients"]["pageInfo"]["hasNextPage"] is False
        client_id = page["clients"]["edges"][0]["node"]["id"]
        created = await session.execute(GraphQLRequest(
            """mutation($c: UUID!) { createProtectiveFactor(input: {clientId: $c, category: routine,
                 description: "Sunday dinner with family"}) { id status version client { id } } }""",
            variable_values={"c": client_id},
        ))
    factor = created["createProtectiveFactor"]
    assert factor["status"] == "present"
    assert factor["version"] == 1
    assert factor["client"]["id"] == client_id
    rest = await api.client(token).get(f"/v1/protective-factors/{factor['id']}")
    assert rest.status_code == 200
