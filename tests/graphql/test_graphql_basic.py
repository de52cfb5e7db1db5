"""GraphQL over the service layer: reads, nested relations, mutations and their errors."""

from __future__ import annotations

import pytest

from tests.support.gqlkit import ALL, error_codes, gql, one_of_each
from tests.support.graphql_corpus import NESTED


async def test_client_with_nested_relations(api):
    org = await api.org()
    ids = await one_of_each(api, org)
    c = api.client(await api.token(org, ALL))
    body = await gql(c, NESTED, {"id": ids["clients"]})
    assert "errors" not in body, body
    client = body["data"]["client"]
    assert client["id"] == ids["clients"]
    assert client["status"] == "active"
    goal = client["goals"]["edges"][0]["node"]
    assert goal["milestones"]["edges"][0]["node"]["title"] == "first walk"
    assert goal["strengths"][0]["label"] == "asks for help"
    assert client["outcomeMarkers"]["edges"][0]["node"]["latestMeasurement"]["value"] == 2
    assert client["strengths"]["pageInfo"] == {"hasNextPage": False,
                                               "endCursor": client["strengths"]["edges"][0]["cursor"]}


async def test_list_filters_and_paging(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    for name in ("A", "B", "C"):
        await gql(c, 'mutation($n: String!) { createClient(input: {displayName: $n}) { id } }', {"n": name})
    page = await gql(c, "{ clients(first: 2) { edges { node { displayName } } pageInfo { hasNextPage endCursor } } }")
    data = page["data"]["clients"]
    assert [e["node"]["displayName"] for e in data["edges"]] == ["A", "B"]
    assert data["pageInfo"]["hasNextPage"]
    rest = await gql(c, "query($a: String) { clients(first: 2, after: $a) { edges { node { displayName } } } }",
                     {"a": data["pageInfo"]["endCursor"]})
    assert [e["node"]["displayName"] for e in rest["data"]["clients"]["edges"]] == ["C"]
    paused = await gql(c, "{ clients(status: paused) { edges { node { id } } } }")
    assert paused["data"]["clients"]["edges"] == []


async def test_mutations_validate_like_rest(api):
    org = await api.org()
    ids = await one_of_each(api, org)
    c = api.client(await api.token(org, ALL))
    body = await gql(c, 'mutation($c: UUID!) { createGoal(input: {clientId: $c, description: "Sleep by 11"}) '
                        '{ id } }', {"c": ids["clients"]})
    assert body["data"]["createGoal"] is None
    assert error_codes(body) == [("BAD_USER_INPUT", "goal_without_strength")]
    assert body["errors"][0]["extensions"]["errors"][0]["field"] == "strengthIds"
    bad = await gql(c, 'mutation($c: UUID!) { createStrength(input: {clientId: $c, domain: personal, kind: skill, '
                       'label: ""}) { id } }', {"c": ids["clients"]})
    assert error_codes(bad) == [("BAD_USER_INPUT", "validation_error")]
    assert bad["errors"][0]["extensions"]["errors"][0]["field"] == "input.label"
    ok = await gql(c, """mutation($id: UUID!) {
                           updateStrength(id: $id, input: {status: confirmed, evidence: ["Asked for help"]},
                                          expectedVersion: 1) { status version } }""", {"id": ids["strengths"]})
    assert ok["data"]["updateStrength"] == {"status": "confirmed", "version": 2}
    stale = await gql(c, """mutation($id: UUID!) { updateStrength(id: $id, input: {label: "x"}, expectedVersion: 1)
                            { version } }""", {"id": ids["strengths"]})
    assert error_codes(stale) == [("PRECONDITION_FAILED", "precondition_failed")]
    gone = await gql(c, "mutation($id: UUID!) { deleteStrength(id: $id) }", {"id": ids["strengths"]})
    assert gone["data"]["deleteStrength"] == ids["strengths"]
    after = await gql(c, "query($id: UUID!) { strength(id: $id) { id } }", {"id": ids["strengths"]})
    assert after == {"data": {"strength": None}}


async def test_phq9_mutation_returns_its_safety_alert(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    ids = await one_of_each(api, org)
    marker = await gql(c, """mutation($c: UUID!) { createOutcomeMarker(input: {clientId: $c, kind: instrument,
                             name: "PHQ-9", instrument: phq9}) { id max } }""", {"c": ids["clients"]})
    mid = marker["data"]["createOutcomeMarker"]["id"]
    body = await gql(c, """mutation($c: UUID!, $m: UUID!) { createMeasurement(input: {clientId: $c, markerId: $m,
                           items: [0,0,0,0,0,0,0,0,1], observedAt: "2026-01-05T10:00:00+01:00"})
                           { value observedAt safetyAlert { status reason } } }""", {"c": ids["clients"], "m": mid})
    assert "errors" not in body, body
    created = body["data"]["createMeasurement"]
    assert created["value"] == 1
    assert created["safetyAlert"]["status"] == "open"


@pytest.mark.parametrize("whole", [True, False])
async def test_unexpected_errors_are_masked(api, monkeypatch, whole):
    from service.graphql import reads

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail: patient Ana")

    monkeypatch.setattr(reads, "compiled", broken)  # every compiled read, whichever path answers
    monkeypatch.setattr(api.app.state.ctx.settings, "graphql_compiled_responses", whole)
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    body = await gql(c, "{ clients { edges { node { id } } } }")
    assert body["errors"][0]["message"] == "Unexpected error."
    assert body["errors"][0]["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "secret" not in str(body)


async def test_rest_filters(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    a = await gql(c, 'mutation { createClient(input: {displayName: "A", identifiers: [{system: "mrn", value: "1"}]})'
                     ' { id } }')
    cid = a["data"]["createClient"]["id"]
    await gql(c, 'mutation { createClient(input: {displayName: "B"}) { id } }')
    found = await gql(c, '{ clients(identifier: "mrn|1") { edges { node { id identifiers { system value } } } } }')
    assert [e["node"]["id"] for e in found["data"]["clients"]["edges"]] == [cid]
    made = await gql(c, 'mutation($c: UUID!) { createStrength(input: {clientId: $c, domain: personal, kind: value, '
                        'label: "honesty", externalIds: [{system: "ehr", value: "s1"}]}) { id } }', {"c": cid})
    sid = made["data"]["createStrength"]["id"]
    by_ext = await gql(c, '{ strengths(externalId: "ehr|s1") { edges { node { id } } } }')
    assert [e["node"]["id"] for e in by_ext["data"]["strengths"]["edges"]] == [sid]
    by_client = await gql(c, "query($c: UUID!) { strengths(clientId: $c, status: hypothesis) "
                             "{ edges { node { id } } } }", {"c": cid})
    assert len(by_client["data"]["strengths"]["edges"]) == 1
    later = await gql(c, '{ strengths(updatedSince: "2999-01-01T00:00:00+00:00") { edges { node { id } } } }')
    assert later["data"]["strengths"]["edges"] == []
    naive = await gql(c, '{ strengths(updatedSince: "2020-01-01T00:00:00") { edges { node { id } } } }')
    assert error_codes(naive) == [("BAD_USER_INPUT", "timezone_required")]
    bad = await gql(c, '{ strengths(externalId: "no-bar") { edges { node { id } } } }')
    assert error_codes(bad) == [("BAD_USER_INPUT", "invalid_identifier")]


async def test_nested_connection_paging(api):
    org = await api.org()
    ids = await one_of_each(api, org)
    c = api.client(await api.token(org, ALL))
    for title in ("second walk", "third walk"):
        await gql(c, 'mutation($c: UUID!, $g: UUID!) { createMilestone(input: {clientId: $c, goalId: $g, '
                     'title: $t, completionCriteria: "done"}) { id } }'.replace("$t", f'"{title}"'),
                  {"c": ids["clients"], "g": ids["goals"]})
    query = """query($g: UUID!, $a: String) { goal(id: $g) { milestones(first: 2, after: $a) {
                 edges { node { title } } pageInfo { hasNextPage endCursor } } } }"""
    first = (await gql(c, query, {"g": ids["goals"]}))["data"]["goal"]["milestones"]
    assert [e["node"]["title"] for e in first["edges"]] == ["first walk", "second walk"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (await gql(c, query, {"g": ids["goals"], "a": first["pageInfo"]["endCursor"]}))["data"]["goal"]
    assert [e["node"]["title"] for e in rest["milestones"]["edges"]] == ["third walk"]
    assert rest["milestones"]["pageInfo"]["hasNextPage"] is False


async def test_node_finds_any_record_it_may_read(api):
    org = await api.org()
    ids = await one_of_each(api, org)
    c = api.client(await api.token(org, ALL))
    query = "query($id: UUID!) { node(id: $id) { __typename id ... on Goal { description } } }"
    for name, ident in ids.items():
        body = await gql(c, query, {"id": ident})
        assert body["data"]["node"]["id"] == ident, (name, body)
    goal = await gql(c, query, {"id": ids["goals"]})
    assert goal["data"]["node"] == {"__typename": "Goal", "id": ids["goals"], "description": "Walk twice a week"}
    only_clients = api.client(await api.token(org, "system/Client.r"))
    assert (await gql(only_clients, query, {"id": ids["goals"]}))["data"]["node"] is None
