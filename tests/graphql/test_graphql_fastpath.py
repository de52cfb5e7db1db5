"""The direct path of POST /graphql (service.graphql.router.GraphQLFastPath) answers exactly as the FastAPI route it
bypasses: same statuses, bodies, headers and audit rows, for successes, field errors and every refusal. A query
string sends a request to FastAPI (the route ignores it), which is how each case is asked both ways."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.graphql import router as graphql_router
from tests.support.audit import events
from tests.support.fastread import same
from tests.support.gqlkit import ALL, one_of_each
from tests.support.graphql_corpus import NESTED

AUDITED = ("org_id", "app_id", "subject", "action", "resource_type", "resource_ids", "client_ids", "outcome",
           "status_code", "method", "path")


@pytest.fixture
def served(monkeypatch):
    """Counts the requests the direct path served (the rest went to FastAPI)."""
    calls = []
    serve = graphql_router.GraphQLFastPath._serve

    async def counting(self, request):
        calls.append(request.url.path)
        return await serve(self, request)

    monkeypatch.setattr(graphql_router.GraphQLFastPath, "_serve", counting)
    return calls


async def both(api, who, **kw):
    """The direct path's answer and FastAPI's, with the audit rows each left."""
    out = []
    for url in ("/graphql", "/graphql?via=router"):
        before = len(await events(api))
        resp = await who.post(url, **kw)
        rows = [{k: r[k] for k in AUDITED} for r in (await events(api))[before:]]
        out.append((resp, rows))
    return out


async def test_every_outcome_matches_the_fastapi_route(api, served):
    org, other = await api.org("A"), await api.org("B")
    ids = await one_of_each(api, org)
    c = api.client(await api.token(org, ALL))
    theirs = await one_of_each(api, other)
    narrow = api.client(await api.token(org, "system/Goal.rs"))
    client = ids["clients"]
    cases = [
        (c, {"json": {"query": NESTED, "variables": {"id": client}}}, 200),  # compiled, whole response
        (c, {"json": {"query": "{ clients(first: 2) { edges { node { id } } pageInfo { hasNextPage } } }"}}, 200),
        (c, {"json": {"query": NESTED, "variables": {"id": theirs["clients"]}}}, 200),  # another org's: null
        (c, {"json": {"query": "{ progressSummary { clients { clientId safetyPriority } } }"}}, 200),  # own resolver
        (c, {"json": {"query": 'mutation { createClient(input: {displayName: "N"}) { displayName } }'}}, 200),
        (narrow, {"json": {"query": NESTED, "variables": {"id": client}}}, 200),  # FORBIDDEN field errors
        (c, {"json": {"query": "{ nope }"}}, 200),  # validation error
        (c, {"json": {"query": "{ clients(first: 1) { edges { node { id } } }", "variables": []}}, 400),
        (c, {"json": [{"query": "{ __typename }"}]}, 400),  # batching is off
        (c, {"json": {"variables": {}}}, 400),  # no query
        (c, {"content": b'{"query": "{ __typename }", "query": "x"}',
             "headers": {"content-type": "application/json"}}, 400),  # duplicate keys: the strict parser
        (c, {"content": b"query=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400),
        (api.client(None), {"json": {"query": "{ __typename }"}}, 401),
        (api.client("not-a-jwt"), {"json": {"query": "{ __typename }"}}, 401),
    ]
    for who, kw, status in cases:
        (fast, fast_rows), (slow, slow_rows) = await both(api, who, **kw)
        assert fast.status_code == status, (kw, fast.text)
        if "mutation" in str(kw):  # each made a client of its own
            assert fast.json()["data"] == slow.json()["data"]
            for row in fast_rows + slow_rows:
                row["resource_ids"] = row["client_ids"] = None
        else:
            same(fast, slow)
        assert fast_rows == slow_rows, kw
    assert served == ["/graphql"] * len(cases)


async def test_other_shapes_go_to_fastapi(api, served):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    assert (await c.get("/graphql", headers={"accept": "text/html"})).status_code == 200  # the IDE
    assert (await c.post("/graphql?x=1", json={"query": "{ __typename }"})).status_code == 200
    assert (await c.put("/graphql", json={"query": "{ __typename }"})).status_code == 405
    assert (await c.post("/graphql/", json={"query": "{ __typename }"})).status_code in (307, 404)
    assert served == []


async def test_metrics_label_the_route_as_fastapi_does(api, served):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    for url in ("/graphql", "/graphql?via=router"):
        assert (await c.post(url, json={"query": "{ __typename }"})).status_code == 200
    samples = [s for f in text_string_to_metric_families((await api.http.get("/metrics")).text)
               if f.name == "http_requests" for s in f.samples if s.name == "http_requests_total"]
    labels = {s.labels["route"] for s in samples if s.labels["method"] == "POST" and "graphql" in s.labels["route"]}
    assert labels == {"/graphql"}, labels
    assert sum(s.value for s in samples if s.labels["route"] == "/graphql" and s.labels["method"] == "POST") >= 2
    assert served == ["/graphql"]
