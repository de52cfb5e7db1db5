"""GraphQL reads compiled to SQL (service/graphql/shapes.py, sql.py, compiled.py): one statement per root field
whatever the page's size or the nesting; relations the token may not read, or asks for with invalid arguments,
refused per field and never read; output fields identical to REST's; declared computed columns selected."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func

from service.collections.registry import REGISTRY
from service.graphql import compiled, specs, sql
from tests.support.audit import events
from tests.support.gqlkit import ALL, DASHBOARD, engines, gql, one_of_each, seed_caseload, statements_on_the_wire
from tests.support.graphql_corpus import selection

NO_STRENGTHS = "system/Client.rs system/Goal.rs system/Milestone.rs system/OutcomeMarker.rs system/Measurement.rs"

ONE_LEVEL = "query($n: Int!) { clients(first: $n) { edges { node { id displayName } } } }"
THREE_LEVELS = """query($n: Int!) { clients(first: $n) { edges { node { id
  goals(first: 10) { edges { node { description milestones(first: 10) { edges { node { title } } } } } } } } } }"""


@pytest.fixture(params=[True, False], ids=["whole response", "stock executor"])
def whole(request, api, monkeypatch):
    monkeypatch.setattr(api.app.state.ctx.settings, "graphql_compiled_responses", request.param)
    return request.param


def kinds(sent: list[str]) -> dict[str, int]:
    """The statements by kind: a revocation check if one is sent, then the operation's transaction (BEGIN, the
    tenant, the reads, the audit row, COMMIT; ``BEGIN; <tenant>`` counts as the tenant, and the group commit's one
    statement (``audit_append``) as the audit row, each one round trip; a read that writes the audit rows itself is
    "read + audit")."""
    out: dict[str, int] = {}
    for statement in sent:
        text = statement.strip().rstrip(";")
        kind = text if text in ("BEGIN", "COMMIT", "ROLLBACK") else \
            "read + audit" if "INSERT INTO audit_events" in text and "json_build_object" in text else \
            "audit" if "audit_append(" in text else \
            "tenant" if "set_config('app.org_id'" in text else "revocation check" if "token_revoked" in text else \
            "read" if "json_build_object" in text else text
        out[kind] = out.get(kind, 0) + 1
    return out


async def statements(api: Any, client: Any, query: str, variables: dict[str, Any]) -> list[str]:
    with statements_on_the_wire(*engines(api)) as sent:
        body = await gql(client, query, variables)
        await asyncio.sleep(0)  # asyncpg calls its query loggers soon after, not at once
    assert "errors" not in body, body
    return sent


async def test_statements_do_not_grow_with_the_page_or_the_nesting(api, whole):
    """The dashboard and documents of one and three levels, over 5, 20 and 100 clients: the same statements each
    time. The token is known not to be revoked after its first use (``service.auth.revocations``: no check is sent);
    the operation sends one statement per root field and, but for one root field on the whole-response path, its
    transaction's own: on the whole-response path one statement in all, on a pinned connection, the read that also
    writes the audit rows (with two root fields, BEGIN with the tenant in one round trip, each read, COMMIT, then
    the audit rows by the group commit); on the stock executor's (SQLAlchemy) BEGIN, the tenant, the read, the
    audit row, COMMIT."""
    org = await api.org()
    await seed_caseload(api, org, 100)
    c = api.client(await api.token(org, ALL))
    await gql(c, ONE_LEVEL, {"n": 1})  # the token's first use asks whether it is revoked; from then on it is known
    await gql(c, ONE_LEVEL, {"n": 1})  # and a pinned connection takes the tenant
    expected = {"read + audit": 1} if whole else {"BEGIN": 1, "tenant": 1, "read": 1, "audit": 1, "COMMIT": 1}
    counts = {}
    for name, query in {"dashboard": DASHBOARD, "one level": ONE_LEVEL, "three levels": THREE_LEVELS}.items():
        for n in (5, 20, 100):
            sent = await statements(api, c, query, {"n": n})
            counts[(name, n)] = len(sent)
            assert kinds(sent) == expected, sent
    print(f"statements per query: {counts}")
    assert len(set(counts.values())) == 1
    two_roots = await statements(api, c, "query($n: Int!) { a: clients(first: $n) { edges { node { id } } } "
                                         "b: clients(first: 1) { pageInfo { hasNextPage } } }", {"n": 20})
    assert kinds(two_roots)["read"] == 2
    assert kinds(two_roots)["audit"] == 1
    # whole response: BEGIN with the tenant, the two reads, COMMIT, then the audit rows by the group commit
    assert len(two_roots) == (5 if whole else len(sent) + 1)


async def test_a_refused_relation_is_refused_per_field_and_not_read(api, whole):
    org = await api.org()
    await seed_caseload(api, org, 6)
    c = api.client(await api.token(org, NO_STRENGTHS))
    with statements_on_the_wire(*engines(api)) as sent:
        body = await gql(c, DASHBOARD, {"n": 20})
        await asyncio.sleep(0)
    paths = sorted(tuple(e["path"]) for e in body["errors"])
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    assert {p[-1] for p in paths} == {"strengths"}
    assert len([p for p in paths if len(p) == 5]) == 6  # clients.edges.N.node.strengths, for each client
    assert len([p for p in paths if len(p) == 9]) == 6  # ... goals.edges.0.node.strengths, for each goal
    for edge in body["data"]["clients"]["edges"]:
        assert edge["node"]["strengths"] is None
        assert edge["node"]["goals"]["edges"][0]["node"]["milestones"]["edges"]  # the rest is there
    assert not any("FROM strengths" in s for s in sent)


async def test_invalid_arguments_are_refused_per_field_as_before(api, whole):
    org = await api.org()
    await seed_caseload(api, org, 6)
    c = api.client(await api.token(org, ALL))
    body = await gql(c, "{ clients(first: 3) { edges { node { goals(first: 0) { edges { node { id } } } } } } }")
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    assert [e["path"][-1] for e in body["errors"]] == ["goals"] * 3


ONE_GOAL = """query($id: UUID!) { client(id: $id) { goals { edges { node {
  milestones(first: 1) { edges { node { id } } %s } } } } } }"""


async def test_a_page_reads_one_row_more_only_to_tell_has_next_page(api, whole):
    """A page of children reads ``LIMIT first`` rows in the list order, unnumbered; only a page whose
    ``pageInfo { hasNextPage }`` is selected reads one row more (numbered with ``row_number()``), and as before the
    audit row names that row's record. A record a page neither returns nor reads to answer is not audited."""
    org = await api.org()
    client_id = (await seed_caseload(api, org, 1))[0]  # a goal with two milestones
    c = api.client(await api.token(org, ALL))
    for page_info, numbered in (("", 0), ("pageInfo { hasNextPage }", 1)):
        with statements_on_the_wire(*engines(api)) as sent:
            body = await gql(c, ONE_GOAL % page_info, {"id": client_id})
            await asyncio.sleep(0)
        assert "errors" not in body, body
        [read] = [s for s in sent if kinds([s]).keys() & {"read", "read + audit"}]
        assert read.count("row_number()") == numbered, read
        milestones = body["data"]["client"]["goals"]["edges"][0]["node"]["milestones"]
        [shown] = [e["node"]["id"] for e in milestones["edges"]]
        audited = (await events(api, org.id, resource_type="Milestone", action="read"))[-1]["resource_ids"]
        assert [str(i) for i in audited[:1]] == [shown]
        if page_info:
            assert milestones["pageInfo"] == {"hasNextPage": True}
        assert len(audited) == 1 + numbered  # the extra row, read to tell hasNextPage


def snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)


def snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {snake(k): snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    return value


@pytest.mark.parametrize("coll_name", list(REGISTRY))
async def test_every_field_reads_as_rest_writes_it(api, whole, coll_name):
    """Every output field of every collection, read by id and in a page, equals REST's JSON for the record: values,
    timestamps (a measurement's observed_at in the offset it was sent with), whole floats, enums, identifiers."""
    org = await api.org()
    ids = await one_of_each(api, org)
    c = api.client(await api.token(org, ALL))
    coll = REGISTRY[coll_name]
    if coll_name == "measurements":  # an offset, and a fraction of a second
        marker = (await c.get(f"/v1/measurements/{ids['measurements']}")).json()["marker_id"]
        resp = await c.post("/v1/measurements", json={"client_id": ids["clients"], "marker_id": marker, "value": 2.5,
                                                      "observed_at": "2026-01-12T20:30:15.250000-05:30"})
        ids["measurements"] = resp.json()["id"]
    rest = (await c.get(f"/v1/{coll_name}/{ids[coll_name]}")).json()
    leaves = selection(coll.out.__name__, 0)
    one = f"camel{{ {leaves} }}".replace("camel", f"{snake_to_camel(coll.type_name)}(id: $id)")
    body = await gql(c, f"query($id: UUID!) {{ {one} }}", {"id": ids[coll_name]})
    got = snake_keys(body["data"][snake_to_camel(coll.type_name)])
    assert got == {k: v for k, v in rest.items() if k in got}
    assert set(got) == {s.name for s in specs.record_specs(coll_name).values() if s.source != "none"}
    page = await gql(c, f"{{ {snake_to_camel(coll.key)}(first: 50) {{ edges {{ node {{ {leaves} }} }} }} }}")
    nodes = [snake_keys(e["node"]) for e in page["data"][snake_to_camel(coll.key)]["edges"]]
    assert got in nodes


def snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


async def test_computed_columns_are_selected_with_the_row(api, whole, monkeypatch):
    """A collection's declared ``computed`` expression (output field -> SQL over its table) is what GraphQL reads
    for that field, in whichever way the request is answered."""
    strengths = REGISTRY["strengths"]
    monkeypatch.setitem(strengths.__dict__, "computed",
                        {**strengths.computed, "uses_count": lambda t: func.length(t.c.label)})
    specs.record_specs.cache_clear()
    sql.compiled.cache_clear()
    compiled.clear_plans()
    try:
        org = await api.org()
        ids = await one_of_each(api, org)
        c = api.client(await api.token(org, ALL))
        body = await gql(c, "query($id: UUID!) { strength(id: $id) { usesCount client { strengths { edges { node { "
                            "usesCount } } } } } }", {"id": ids["strengths"]})
        assert body["data"]["strength"]["usesCount"] == len("Asks for help")
        assert body["data"]["strength"]["client"]["strengths"]["edges"][0]["node"]["usesCount"] == len("Asks for help")
    finally:
        monkeypatch.undo()
        specs.record_specs.cache_clear()
        sql.compiled.cache_clear()
        compiled.clear_plans()


async def test_a_record_of_more_than_fifty_keys(api, whole):
    """PostgreSQL's json_build_object takes 50 pairs: wider selections are built in chunks, keys still in order."""
    org = await api.org()
    ids = await one_of_each(api, org)
    c = api.client(await api.token(org, ALL))
    fields = selection("Client", 1)  # its fields and relations
    aliases = " ".join(f"a{i}: displayName" for i in range(30))  # the most aliases a document may hold
    body = await gql(c, f"query($id: UUID!) {{ client(id: $id) {{ __typename {fields} {aliases} }} }}",
                     {"id": ids["clients"]})
    assert "errors" not in body, body
    record = body["data"]["client"]
    assert len(record) > 50
    assert list(record)[-30:] == [f"a{i}" for i in range(30)]
    assert {record[f"a{i}"] for i in range(30)} == {"Ana"}
    assert record["strengths"]["edges"][0]["node"]["__typename"] == "Strength"
