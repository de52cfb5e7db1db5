"""A corpus of GraphQL requests over a fixed world, and their answers normalized, for the differential test
(tests/graphql/test_graphql_differential.py).

The world is built through REST with fixed values (names, dates, offsets), so two runs differ only in what the
service generates: ids, cursors and the timestamps it stamps. Answers are normalized for exactly those: every id
becomes the label of the record it names (``ana.goal``, ``caseload.clients#3``, ``new#2`` for records a mutation
created), a cursor becomes ``<cursor:label>``, and ``createdAt``-like stamps become ``<now>``; errors are sorted by
path. What is left must be equal: data, error messages, codes, paths and locations, and the audit rows each request
wrote (resource type, action, outcome, the labels of the records and clients named).

The cases (documents, variables, principals) are generated once, when recording, from the committed SDL of that
time, and stored with their answers; the check replays the stored documents, so fields added to the schema later do
not change the corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from graphql import (
    GraphQLInterfaceType,
    GraphQLObjectType,
    build_schema,
    get_named_type,
    is_leaf_type,
)

from service.auth.scopes import RESOURCES
from service.collections.registry import REGISTRY
from service.collections.repository import decode_cursor, encode_cursor
from service.errors import DomainError
from service.settings import PROJECT_ROOT
from tests.support.gqlkit import ALL, DASHBOARD, one_of_each, seed_caseload
from tests.support.harness import Api, AuthedClient, Org

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NOW_KEYS = frozenset({"createdAt", "updatedAt", "acknowledgedAt", "resolvedAt", "openedAt"})
WITHOUT_PROGRESS = " ".join(f"system/{r}.cruds" for r in RESOURCES if r != "Progress")

# name -> (organization "A" or "B", scopes, patient label or None)
PRINCIPALS: dict[str, tuple[str, str, str | None]] = {
    "all": ("A", ALL, None),
    "no strengths": ("A", "system/Client.rs system/Goal.rs system/Milestone.rs system/OutcomeMarker.rs "
                          "system/Measurement.rs", None),
    "no milestone search": ("A", "system/Client.rs system/Goal.rs system/Strength.rs system/Milestone.r "
                                 "system/OutcomeMarker.rs system/Measurement.rs", None),
    "no measurements": ("A", "system/Client.rs system/Goal.rs system/Strength.rs system/Milestone.rs "
                             "system/OutcomeMarker.rs", None),
    "client read": ("A", "system/Client.r", None),
    "clients only": ("A", "system/Client.rs", None),
    "no progress": ("A", WITHOUT_PROGRESS, None),
    "no read": ("A", "system/*.cuds", None),
    "no search": ("A", "system/*.crud", None),
    "patient": ("A", "patient/*.cruds", "ana"),
    "other org": ("B", ALL, None),
    **{f"all but {r}": ("A", " ".join(f"system/{o}.cruds" for o in RESOURCES if o != r), None)
       for r in RESOURCES if r not in ("Progress", "Webhook", "AuditEvent")},
}


@dataclass
class World:
    api: Api
    orgs: dict[str, Org]
    ids: dict[str, str] = field(default_factory=dict)  # label -> id
    labels: dict[str, str] = field(default_factory=dict)  # id -> label
    tokens: dict[str, str] = field(default_factory=dict)

    def name(self, label: str, ident: str) -> str:
        self.ids[label] = ident
        self.labels[ident] = label
        return ident

    async def post(self, c: AuthedClient, path: str, label: str, body: dict[str, Any]) -> str:
        resp = await c.post(f"/v1/{path}", json=body)
        assert resp.status_code == 201, resp.text
        return self.name(label, resp.json()["id"])

    async def client(self, principal: str) -> AuthedClient:
        if principal not in self.tokens:
            org, scopes, patient = PRINCIPALS[principal]
            self.tokens[principal] = await self.api.token(self.orgs[org], scopes,
                                                          UUID(self.ids[patient]) if patient else None)
        return self.api.client(self.tokens[principal])

    def resolve(self, value: Any) -> Any:
        """Variables name records symbolically: ``@label`` is its id, ``@cursor:label`` the cursor after it."""
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, str) and value.startswith("@cursor:"):
            return encode_cursor(UUID(self.ids[value.removeprefix("@cursor:")]))
        if isinstance(value, str) and value.startswith("@"):
            return self.ids[value[1:]]
        return value


async def build_world(api: Api) -> World:
    world = World(api, {"A": await api.org("A"), "B": await api.org("B")})
    c = api.client(await api.token(world.orgs["A"], ALL))
    await _ana(world, c)
    await _bo(world, c)
    await seed_caseload(api, world.orgs["A"], 6)
    await one_of_each(api, world.orgs["B"])
    # a reference to another organization's record, written behind the service's back
    b_strength = await api.db.fetchval("SELECT id FROM strengths WHERE org_id = $1", world.orgs["B"].id)
    await api.db.fetch("UPDATE goals SET strength_ids = strength_ids || $1::uuid WHERE id = $2::uuid",
                       b_strength, world.ids["ana.goal"])
    await _label_the_rest(world)
    return world


async def _ana(w: World, c: AuthedClient) -> None:
    ana = await w.post(c, "clients", "ana", {
        "display_name": "Ana", "identifiers": [{"system": "mrn", "value": "1"}], "birth_date": "1990-04-01",
        "preferred_language": "es-MX", "preferred_future": "Back at work, calling my sister weekly"})
    s1 = await w.post(c, "strengths", "ana.s1", {
        "client_id": ana, "domain": "relational", "kind": "skill", "label": "asks for help",
        "client_label": "I reach out", "description": "Asks a friend and follows the plan", "context": "at work",
        "under_stress": True, "evidence": ["called her sister"], "external_ids": [{"system": "ehr", "value": "s1"}]})
    s2 = await w.post(c, "strengths", "ana.s2", {"client_id": ana, "domain": "personal", "kind": "value",
                                                  "label": "honesty"})
    s3 = await w.post(c, "strengths", "ana.s3", {"client_id": ana, "domain": "personal", "kind": "skill",
                                                  "label": "deleted one"})
    assert (await c.delete(f"/v1/strengths/{s3}")).status_code == 204
    goal = await w.post(c, "goals", "ana.goal", {
        "client_id": ana, "description": "Walk twice a week", "strength_ids": [s1, s2], "lifecycle": "active",
        "start_date": "2026-01-01", "target_date": "2026-06-30", "barriers": ["night shifts"],
        "external_ids": [{"system": "ehr", "value": "g1"}]})
    walks = await w.post(c, "outcome-markers", "ana.walks", {
        "client_id": ana, "kind": "frequency", "name": "walks", "unit": "/wk", "min": 0, "max": 14,
        "goal_id": goal, "code": "W"})
    resp = await c.patch(f"/v1/goals/{goal}", json={"target": {"marker_id": walks, "comparator": ">=", "value": 3,
                                                              "period": "P1W", "duration": "P4W"}})
    assert resp.status_code == 200, resp.text
    for i, (status, done) in enumerate([("planned", None), ("in_progress", None),
                                        ("done", "2026-01-20T18:00:00+01:00")], 1):
        await w.post(c, "milestones", f"ana.m{i}", {
            "client_id": ana, "goal_id": goal, "title": f"step {i}", "completion_criteria": "walked", "sequence": i,
            "status": status, "due_date": f"2026-0{i}-15", **({"completed_at": done} if done else {})})
    phq9 = await w.post(c, "outcome-markers", "ana.phq9", {"client_id": ana, "kind": "instrument", "name": "PHQ-9",
                                                          "instrument": "phq9"})
    await w.post(c, "measurements", "ana.walk1", {"client_id": ana, "marker_id": walks, "value": 2,
                                                  "observed_at": "2026-01-05T08:00:00+02:00", "source": "phone",
                                                  "external_id": "w-1", "note": "first"})
    await w.post(c, "measurements", "ana.walk2", {"client_id": ana, "marker_id": walks, "value": 4.5,
                                                  "observed_at": "2026-01-12T20:30:15.250000-05:30"})
    await w.post(c, "measurements", "ana.phq", {"client_id": ana, "marker_id": phq9,
                                                "items": [1, 1, 1, 1, 1, 1, 1, 1, 0],
                                                "observed_at": "2026-01-06T10:00:00+01:00"})
    await w.post(c, "protective-factors", "ana.pf", {"client_id": ana, "category": "routine",
                                                     "description": "morning walk"})
    await w.post(c, "exceptions", "ana.ex", {"client_id": ana, "problem": "worry", "description": "smaller at work",
                                             "conditions": ["reduced_triggers"], "strength_ids": [s1],
                                             "observed_at": "2026-01-03T09:30:00+01:00"})
    await w.post(c, "strength-uses", "ana.use", {"client_id": ana, "strength_id": s1, "situation": "hard day",
                                                 "result": "felt capable", "rating": 7,
                                                 "occurred_at": "2026-01-04T19:00:00-03:00"})
    await w.post(c, "experiments", "ana.exp", {"client_id": ana, "strength_id": s1, "goal_id": goal,
                                               "plan": "ask a friend on Monday", "due_date": "2026-02-01",
                                               "confidence_before": 4})
    await w.post(c, "safety-alerts", "ana.alert", {"client_id": ana, "reason": "clinician concern",
                                                        "observed_at": "2026-01-04T09:30:00+00:00"})


async def _bo(w: World, c: AuthedClient) -> None:
    bo = await w.post(c, "clients", "bo", {"display_name": "Bo", "status": "paused"})
    s1 = await w.post(c, "strengths", "bo.s1", {"client_id": bo, "domain": "relational", "kind": "skill",
                                                "label": "listens"})
    goal = await w.post(c, "goals", "bo.goal", {"client_id": bo, "description": "Sleep by 11", "strength_ids": [s1]})
    walks = await w.post(c, "outcome-markers", "bo.walks", {"client_id": bo, "kind": "frequency", "name": "walks",
                                                            "unit": "/wk", "goal_id": goal})
    await w.post(c, "measurements", "bo.walk1", {"client_id": bo, "marker_id": walks, "value": 1,
                                                 "observed_at": "2026-01-07T07:00:00+00:00"})


async def _label_the_rest(w: World) -> None:
    """Records the fixtures made without naming them: ``<org>.<collection>#<n>`` in id (creation) order."""
    for org_name, org in w.orgs.items():
        for coll in REGISTRY.values():
            rows = await w.api.db.fetch(f"SELECT id FROM {coll.table.name} WHERE org_id = $1 ORDER BY id", org.id)
            n = 0
            for row in rows:
                if str(row["id"]) not in w.labels:
                    w.name(f"{org_name}.{coll.name}#{n}", str(row["id"]))
                    n += 1


# ---------------------------------------------------------------- normalizing answers


class Normalizer:
    def __init__(self, world: World) -> None:
        self.world = world
        self.new: dict[str, str] = {}

    def label(self, ident: str) -> str:
        found = self.world.labels.get(ident) or self.new.get(ident)
        if found is None:
            found = self.new[ident] = f"new#{len(self.new)}"
        return found

    def text(self, value: str, key: str | None) -> str:
        if key in NOW_KEYS:
            return "<now>"
        if value.startswith("djE6") and len(value) == 26:  # base64url of b"v1:" + 16 bytes: a record cursor
            try:
                return f"<cursor:{self.label(str(decode_cursor(value)))}>"
            except DomainError:
                return value
        return UUID_RE.sub(lambda m: f"<{self.label(m.group(0))}>", value)

    def __call__(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, key) for v in value]
        if isinstance(value, str):
            return self.text(value, key)
        return value

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        out = self(body)
        if "errors" in out:
            out["errors"] = sorted(out["errors"], key=lambda e: ([str(p) for p in e.get("path") or []],
                                                               e.get("message", "")))
        return out  # type: ignore[no-any-return]

    def audit(self, rows: list[Any]) -> list[list[Any]]:
        return sorted([[r["resource_type"], r["action"], r["outcome"],
                        sorted(self.label(str(i)) for i in r["resource_ids"]),
                        sorted(self.label(str(i)) for i in r["client_ids"])] for r in rows])


async def run_case(world: World, norm: Normalizer, case: dict[str, Any]) -> dict[str, Any]:
    client = await world.client(case["principal"])
    db = world.api.db
    before = await db.fetchval("SELECT coalesce(max(seq), 0) FROM audit_events")
    resp = await client.post("/graphql", json={"query": case["query"],
                                               "variables": world.resolve(case.get("variables") or {})})
    body = resp.json()
    rows = await db.fetch("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq", before)
    return {"status": resp.status_code, "response": norm.response(body), "audit": norm.audit(rows)}


# ---------------------------------------------------------------- the cases


SDL = build_schema((PROJECT_ROOT / "schema" / "schema.graphql").read_text())
RECORD_FOR = {
    "clients": "ana", "strengths": "ana.s1", "protective-factors": "ana.pf", "exceptions": "ana.ex",
    "goals": "ana.goal", "milestones": "ana.m3", "outcome-markers": "ana.walks", "measurements": "ana.walk2",
    "strength-uses": "ana.use", "experiments": "ana.exp", "safety-alerts": "ana.alert",
}
BO_RECORD_FOR = {"clients": "bo", "strengths": "bo.s1", "goals": "bo.goal", "outcome-markers": "bo.walks",
                 "measurements": "bo.walk1"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def selection(type_name: str, depth: int) -> str:
    """Every field of the type: leaves, nested objects in full; relations (``depth`` > 0) by id, connections as
    two records with their cursors and page info. Client.progress is left out (its content is the progress
    service's)."""
    gtype = SDL.type_map[type_name]
    assert isinstance(gtype, GraphQLObjectType | GraphQLInterfaceType)
    parts = []
    for name, fdef in gtype.fields.items():
        named = get_named_type(fdef.type)
        if name == "progress":
            continue
        if is_leaf_type(named):
            parts.append(name)
        elif named.name.endswith("Connection"):
            if depth > 0:
                parts.append(f"{name}(first: 2) {{ edges {{ cursor node {{ id __typename }} }} "
                             "pageInfo { hasNextPage endCursor } }")
        elif "id" in getattr(named, "fields", {}) and named.name != type_name or name == "safetyAlert":
            if depth > 0:
                parts.append(f"{name} {{ id __typename }}")
        else:
            parts.append(f"{name} {{ {selection(named.name, depth)} }}")
    return " ".join(parts)


def _roots() -> dict[str, tuple[str, str]]:
    """collection name -> (by-id field, connection field)."""
    return {c.name: (_camel(c.type_name), _camel(c.key)) for c in REGISTRY.values()}


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

NESTED = """
query($id: UUID!) {
  client(id: $id) {
    id displayName status
    goals { edges { node { description milestones { edges { node { title } } }
                           strengths { label } outcomeMarkers { edges { node { name } } } } } }
    strengths { edges { cursor node { label client { id } } } pageInfo { hasNextPage endCursor } }
    outcomeMarkers { edges { node { name latestMeasurement { value observedAt } } } }
    safetyAlerts { edges { node { reason status } } }
  }
}"""

SHAPES = """
query Shapes($id: UUID!, $with: Boolean!, $without: Boolean!) {
  __typename
  me: client(id: $id) {
    __typename a: displayName b: displayName displayName
    ... on Node { id }
    ...Goals @include(if: $with)
    strengths(first: 1) @skip(if: $without) { __typename edges { __typename node { __typename label } } }
    again: strengths { edges { node { label } } pageInfo { __typename hasNextPage } }
    ... @include(if: $without) { status }
  }
  other: node(id: $id) { __typename ... on Client { displayName } ... on Goal { description } }
}
fragment Goals on Client {
  goals { edges { node { ...G g2: description } } }
  goals { edges { cursor node { lifecycle } } }
}
fragment G on Goal { description target { comparator value markerId period } strengthIds }
"""


def cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, principal: str, query: str, variables: dict[str, Any] | None = None) -> None:
        out.append({"name": name, "principal": principal, "query": " ".join(query.split()),
                    "variables": variables or {}})

    roots = _roots()
    for coll in REGISTRY.values():
        one, many = roots[coll.name]
        type_name = coll.out.__name__
        by_id = f"query($id: UUID!) {{ {one}(id: $id) {{ {selection(type_name, 1)} }} }}"
        for principal in ("all", "no read", "other org", "patient"):
            add(f"{one} by id as {principal}", principal, by_id, {"id": "@" + RECORD_FOR[coll.name]})
        if coll.name in BO_RECORD_FOR:
            add(f"{one} of another client as patient", "patient", by_id, {"id": "@" + BO_RECORD_FOR[coll.name]})
        page = f"{{ edges {{ cursor node {{ {selection(type_name, 0)} }} }} pageInfo {{ hasNextPage endCursor }} }}"
        for principal in ("all", "patient", "no search"):
            add(f"{many} as {principal}", principal, f"{{ {many}(first: 50) {page} }}")
        if coll.client_owned:
            add(f"{many} of ana", "all", f"query($c: UUID) {{ {many}(clientId: $c) {page} }}", {"c": "@ana"})
        gtype = SDL.type_map[type_name]
        assert isinstance(gtype, GraphQLObjectType)
        for fname, fdef in gtype.fields.items():
            target = get_named_type(fdef.type).name.removesuffix("Connection")
            target_coll = next((c for c in REGISTRY.values() if c.out.__name__ == target), None)
            if target_coll is None or fname == "safetyAlert" or target_coll.resource == coll.resource:
                continue
            sub = "{ edges { node { id } } }" if get_named_type(fdef.type).name.endswith("Connection") else "{ id }"
            add(f"{one}.{fname} without {target_coll.resource}", f"all but {target_coll.resource}",
                f"query($id: UUID!) {{ {one}(id: $id) {{ id {fname} {sub} }} }}",
                {"id": "@" + RECORD_FOR[coll.name]})
    add("deleted strength by id", "all", "query($id: UUID!) { strength(id: $id) { id label } }", {"id": "@ana.s3"})
    for principal in ("all", "no strengths", "no milestone search", "no measurements", "patient", "clients only"):
        add(f"dashboard as {principal}", principal, DASHBOARD, {"n": 20})
    for n in (1, 5):
        add(f"dashboard of {n}", "all", DASHBOARD, {"n": n})
    add("dashboard after a cursor", "all", DASHBOARD, {"n": 3, "after": "@cursor:A.clients#1"})
    for principal in ("all", "no strengths", "no milestone search", "no measurements"):
        add(f"tangled as {principal}", principal, TANGLED,
            {"n": 20, "m": 1, "skipMarkers": False, "after": "@cursor:A.strengths#0"})
    add("tangled skipping markers", "all", TANGLED, {"n": 2, "m": 2, "skipMarkers": True, "after": None})
    for principal in ("all", "patient", "other org", "client read"):
        add(f"nested relations as {principal}", principal, NESTED, {"id": "@ana"})
    for flags in ((True, False), (False, True)):
        add(f"shapes {flags}", "all", SHAPES, {"id": "@ana", "with": flags[0], "without": flags[1]})
    _paging_and_filters(add)
    _nodes_and_errors(add)
    _mutations(add)
    return out


def _paging_and_filters(add: Any) -> None:
    page = "{ edges { cursor node { id displayName } } pageInfo { hasNextPage endCursor } }"
    add("clients first 2", "all", f"{{ clients(first: 2) {page} }}")
    add("clients after", "all", f"query($a: String) {{ clients(first: 2, after: $a) {page} }}", {"a": "@cursor:bo"})
    add("clients paused", "all", f"{{ clients(status: paused) {page} }}")
    add("clients by identifier", "all", f'{{ clients(identifier: "mrn|1") {page} }}')
    add("clients by unknown identifier", "all", f'{{ clients(identifier: "mrn|2") {page} }}')
    milestones = "query($g: UUID!, $a: String) { goal(id: $g) { milestones(first: 2, after: $a) { " \
                 "edges { cursor node { title } } pageInfo { hasNextPage endCursor } } } }"
    add("milestones first 2", "all", milestones, {"g": "@ana.goal"})
    add("milestones after", "all", milestones, {"g": "@ana.goal", "a": "@cursor:ana.m2"})
    add("strengths by external id", "all", '{ strengths(externalId: "ehr|s1") { edges { node { id label } } } }')
    add("strengths of ana by status", "all",
        "query($c: UUID!) { strengths(clientId: $c, status: hypothesis) { edges { node { id } } } }", {"c": "@ana"})
    add("strengths updated in the future", "all",
        '{ strengths(updatedSince: "2999-01-01T00:00:00+00:00") { edges { node { id } } } }')
    add("strengths updated since naive", "all",
        '{ strengths(updatedSince: "2020-01-01T00:00:00") { edges { node { id } } } }')
    add("strengths by bad external id", "all", '{ strengths(externalId: "no-bar") { edges { node { id } } } }')
    add("milestones of a goal", "all", "query($g: UUID) { milestones(goalId: $g) { edges { node { title } } } }",
        {"g": "@ana.goal"})
    add("measurements of a marker", "all",
        "query($m: UUID) { measurements(markerId: $m, first: 1) { edges { node { value observedAt } } "
        "pageInfo { hasNextPage endCursor } } }", {"m": "@ana.walks"})
    add("experiments of a goal and strength", "all",
        "query($g: UUID, $s: UUID) { experiments(goalId: $g, strengthId: $s) { edges { node { plan } } } }",
        {"g": "@ana.goal", "s": "@ana.s1"})
    add("corrupt reference", "all", "query($g: UUID!) { goal(id: $g) { strengthIds strengths { id label } } }",
        {"g": "@ana.goal"})
    add("two roots", "all", "query($a: UUID!, $b: UUID!) { a: client(id: $a) { displayName } "
                            "b: client(id: $b) { displayName } n: clients(first: 1) { edges { node { id } } } }",
        {"a": "@ana", "b": "@bo"})
    add("typename only", "all", "{ __typename }")
    add("progress refused", "clients only", "query($id: UUID!) { client(id: $id) { id progress { safetyPriority } } }",
        {"id": "@ana"})
    add("progress summary refused", "clients only", "{ progressSummary { clientCount } }")
    add("progress beside compiled fields", "no progress",
        "query($id: UUID!) { client(id: $id) { displayName progress { goals { goalId } } "
        "strengths(first: 1) { edges { node { label } } } } }", {"id": "@ana"})


def _nodes_and_errors(add: Any) -> None:
    node = "query($id: UUID!) { node(id: $id) { __typename id ... on Goal { description } " \
           "... on Measurement { observedAt value } ... on Client { displayName } } }"
    for coll_name, label in RECORD_FOR.items():
        add(f"node {coll_name}", "all", node, {"id": "@" + label})
    add("node goal with client read", "client read", node, {"id": "@ana.goal"})
    add("node with nothing readable", "no read", node, {"id": "@ana"})
    add("node of another org", "all", node, {"id": "@B.clients#0"})
    add("node of another client as patient", "patient", node, {"id": "@bo"})
    add("first 0", "all", "{ clients(first: 0) { edges { node { id } } } }")
    add("first 501", "all", "{ clients(first: 501) { edges { node { id } } } }")
    add("bad root cursor", "all", '{ clients(after: "abc") { edges { node { id } } } }')
    add("nested first 0", "all",
        "{ clients(first: 3) { edges { node { goals(first: 0) { edges { node { id } } } } } } }")
    add("nested bad cursor", "all",
        '{ clients(first: 2) { edges { node { displayName goals(after: "zzz") { edges { node { id } } } } } } }')
    add("not a uuid", "all", "query($id: UUID!) { client(id: $id) { id } }", {"id": "not-a-uuid"})
    add("wrong variable type", "all", "query($n: Int!) { clients(first: $n) { edges { node { id } } } }", {"n": "x"})
    add("unknown field", "all", "{ clients { edges { node { nope } } } }")
    deep = "{ clients { edges { node { strengths { edges { node { client { strengths { edges { node { client { " \
           "strengths { edges { node { id } } } } } } } } } } } } } } }"
    add("too deep", "all", deep)
    add("too costly", "all", "{ clients(first: 500) { edges { node { goals(first: 500) { edges { node { "
                             "milestones(first: 500) { edges { node { id } } } } } } } } } }")


def _mutations(add: Any) -> None:
    add("create protective factor", "all",
        'mutation($c: UUID!) { createProtectiveFactor(input: {clientId: $c, category: routine, description: '
        '"Sunday dinner"}) { __typename id status version client { id displayName } } }', {"c": "@ana"})
    add("create goal without strength", "all",
        'mutation($c: UUID!) { createGoal(input: {clientId: $c, description: "Sleep by 11"}) { id } }', {"c": "@ana"})
    add("create strength with empty label", "all",
        'mutation($c: UUID!) { createStrength(input: {clientId: $c, domain: personal, kind: skill, label: ""}) '
        '{ id } }', {"c": "@ana"})
    add("update strength", "all",
        "mutation($id: UUID!) { updateStrength(id: $id, input: {status: confirmed, evidence: [\"owned up to the missed "
        "shift\"]}, expectedVersion: 1) "
        "{ status version client { displayName } experiments { edges { node { id } } } } }", {"id": "@ana.s2"})
    add("update strength stale", "all",
        'mutation($id: UUID!) { updateStrength(id: $id, input: {label: "x"}, expectedVersion: 1) { version } }',
        {"id": "@ana.s2"})
    add("phq-9 with a risk item", "all",
        'mutation($c: UUID!, $m: UUID!) { createMeasurement(input: {clientId: $c, markerId: $m, '
        'items: [0,0,0,0,0,0,0,0,1], observedAt: "2026-01-05T10:00:00+01:00"}) '
        '{ value observedAt safetyAlert { status reason } marker { name } } }', {"c": "@ana", "m": "@ana.phq9"})
    add("measurement with an offset", "all",
        'mutation($c: UUID!, $m: UUID!) { createMeasurement(input: {clientId: $c, markerId: $m, value: 3, '
        'observedAt: "2026-02-01T07:15:00-03:00"}) { value observedAt client { displayName } } }',
        {"c": "@ana", "m": "@ana.walks"})
    add("delete milestone", "all", "mutation($id: UUID!) { deleteMilestone(id: $id) }", {"id": "@ana.m2"})
    add("deleted milestone by id", "all", "query($id: UUID!) { milestone(id: $id) { id } }", {"id": "@ana.m2"})
    add("update another org's client", "all",
        'mutation($id: UUID!) { updateClient(id: $id, input: {displayName: "x"}) { id } }', {"id": "@B.clients#0"})
    add("create client without scope", "client read", 'mutation { createClient(input: {displayName: "x"}) { id } }')
    add("update goal", "all",
        "mutation($id: UUID!) { __typename updateGoal(id: $id, input: {achievement: improving}) { achievement version "
        "strengths { label } milestones { edges { node { title } } } } }", {"id": "@ana.goal"})
    add("create client", "all",
        'mutation { createClient(input: {displayName: "Cy", identifiers: [{system: "mrn", value: "9"}]}) '
        '{ id displayName identifiers { system value } strengths { edges { node { id } } } } }')
