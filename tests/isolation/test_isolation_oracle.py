"""No answer lets a patient-context token tell another patient's identifiers from unknown ones (CONTRACT.md
section 2): over every write path, another patient's identifier and a random one get the same status and the
same body shape (status, problem type and code, the set of keys; ids and echoed values may differ)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from service.domain.registry import COLLECTIONS
from tests.support.factories import NOW, body_for, create
from tests.support.harness import Api, AuthedClient

FHIR = "/fhir/R4"
FHIR_JSON = "application/fhir+json"
MARKER_SYSTEM = "https://strengths-api.dev/fhir/CodeSystem/outcome-marker"
# Every collection named by external ids (clients by identifiers, measurements by source and external id).
BY_EXTERNAL_IDS = [c.name for c in COLLECTIONS if c.client_owned and not c.natural_key]


@dataclass
class World:
    api: Api
    staff: AuthedClient
    me: AuthedClient  # a patient-context token of Ana
    ana: str
    ben: str
    foreign: dict[str, tuple[str, str]]  # collection -> an identifier Ben's record holds
    ana_records: dict[str, dict[str, Any]]
    ana_marker: dict[str, Any]


@pytest.fixture
async def world(api: Api) -> World:
    org = await api.org()
    staff = api.client(await api.token(org, "system/*.cruds"))
    ana = (await staff.post("/v1/clients", json={"display_name": "Ana", "identifiers": [
        {"system": "mrn", "value": "A-1"}]})).json()["id"]
    ben = (await staff.post("/v1/clients", json={"display_name": "Ben", "identifiers": [
        {"system": "mrn", "value": "B-1"}]})).json()["id"]
    foreign = {"clients": ("mrn", "B-1"), "measurements": ("moodapp", "B-m1")}
    for name in BY_EXTERNAL_IDS:
        foreign[name] = ("ehr", f"B-{name}")
        await create(staff, name, client_id=ben, external_ids=[{"system": "ehr", "value": f"B-{name}"}])
    await create(staff, "measurements", client_id=ben, source="moodapp", external_id="B-m1")
    me = api.client(await api.token(org, "patient/*.cruds", patient=uuid.UUID(ana)))
    ana_records = {name: await create(me, name, client_id=ana) for name in [*BY_EXTERNAL_IDS, "measurements"]}
    marker = await create(me, "outcome-markers", client_id=ana)
    return World(api, staff, me, ana, ben, foreign, ana_records, marker)


def shape(resp: Any) -> tuple[Any, ...]:
    """What may not differ: the status, the problem's type and code, the keys of the body (and of its items)."""
    body = orjson.loads(resp.content) if resp.content else None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return resp.status_code, "OperationOutcome", tuple(
            (i.get("code"), tuple(c.get("code") for c in (i.get("details") or {}).get("coding", [])))
            for i in body["issue"])
    if isinstance(body, dict) and "status" in body and "type" in body:
        return resp.status_code, body["type"], body.get("code"), frozenset(body), tuple(
            sorted(str(e.get("code")) for e in body.get("errors") or []))
    if isinstance(body, dict) and "results" in body:
        return resp.status_code, tuple((r["status"], frozenset(r), (r.get("problem") or {}).get("code"))
                                       for r in body["results"])
    if isinstance(body, dict) and "errors" in body or isinstance(body, dict) and "data" in body:
        errors = tuple((e.get("extensions", {}).get("code"), e.get("extensions", {}).get("reason"))
                       for e in body.get("errors") or [])
        data = {k: v if v is None else frozenset(v) for k, v in (body.get("data") or {}).items()}
        return resp.status_code, errors, tuple(sorted(data.items(), key=lambda kv: kv[0]))
    if isinstance(body, dict):
        return resp.status_code, frozenset(body)
    return resp.status_code, type(body).__name__


def ndjson_shape(resp: Any) -> tuple[Any, ...]:
    lines = [orjson.loads(line) for line in resp.content.splitlines() if line.strip()]
    return resp.status_code, tuple((r["status"], frozenset(r), (r.get("problem") or {}).get("code")) for r in lines)


Attempt = Callable[[World, str, str], Awaitable[tuple[Any, ...]]]


# ---------------------------------------------------------------- REST


async def rest_create(w: World, name: str, system: str, value: str) -> tuple[Any, ...]:
    if name == "clients":
        body = {"display_name": "Me again", "identifiers": [{"system": system, "value": value}]}
    elif name == "measurements":
        body = await body_for(w.me, name, client_id=w.ana, marker_id=w.ana_marker["id"], source=system,
                              external_id=value)
    else:
        body = await body_for(w.me, name, client_id=w.ana, external_ids=[{"system": system, "value": value}])
    return shape(await w.me.post(f"/v1/{name}", json=body))


async def rest_upsert(w: World, name: str, system: str, value: str) -> tuple[Any, ...]:
    param = "identifier" if name == "clients" else "external_id"
    if name == "clients":
        body = {"display_name": "Me again"}
    elif name == "measurements":
        body = await body_for(w.me, name, client_id=w.ana, marker_id=w.ana_marker["id"])
    else:
        body = await body_for(w.me, name, client_id=w.ana)
    return shape(await w.me.put(f"/v1/{name}", params={param: f"{system}|{value}"}, json=body))


async def rest_patch(w: World, name: str, system: str, value: str) -> tuple[Any, ...]:
    if name == "clients":
        return shape(await w.me.patch(f"/v1/clients/{w.ana}", json={"identifiers": [
            {"system": "mrn", "value": "A-1"}, {"system": system, "value": value}]}))
    if name == "measurements":
        fresh = await create(w.me, name, client_id=w.ana, marker_id=w.ana_marker["id"])
        return shape(await w.me.patch(f"/v1/measurements/{fresh['id']}", json={
            "source": system, "external_id": value}))
    fresh = await create(w.me, name, client_id=w.ana)
    return shape(await w.me.patch(f"/v1/{name}/{fresh['id']}", json={
        "external_ids": [{"system": system, "value": value}]}))


REST: dict[str, Callable[[World, str, str, str], Awaitable[tuple[Any, ...]]]] = {
    "create": rest_create, "upsert": rest_upsert, "patch": rest_patch}


@pytest.mark.parametrize("operation", sorted(REST))
@pytest.mark.parametrize("name", ["clients", "measurements", *BY_EXTERNAL_IDS])
async def test_rest_writes_cannot_tell_another_patients_identifier_from_a_random_one(world, name, operation):
    w = world
    system, theirs = w.foreign[name]
    attempt = REST[operation]
    foreign = await attempt(w, name, system, theirs)
    unknown = await attempt(w, name, system, f"R-{uuid.uuid4().hex}")
    assert foreign == unknown
    assert foreign[0] < 500
    if name == "clients":  # patient tokens neither create clients nor change their identifiers
        assert foreign[0] == 403
    else:  # the identifier is stored for Ana: another patient's is, to her token, an unknown one
        assert foreign[0] in (200, 201), foreign
    await _bens_records_unchanged(w)


async def _bens_records_unchanged(w: World) -> None:
    for name, (system, value) in w.foreign.items():
        param = "identifier" if name == "clients" else "external_id"
        page = (await w.staff.get(f"/v1/{name}", params={param: f"{system}|{value}"})).json()["data"]
        mine = [r for r in page if (r["id"] if name == "clients" else r["client_id"]) == w.ben]
        assert len(mine) == 1, (name, page)
        assert mine[0]["version"] == 1, (name, page)


# ---------------------------------------------------------------- batch, bulk, GraphQL, FHIR


async def batch(w: World, system: str, value: str) -> tuple[Any, ...]:
    item = {"client_id": w.ana, "marker_id": w.ana_marker["id"], "value": 3, "observed_at": NOW,
            "source": system, "external_id": value}
    return shape(await w.me.post("/v1/measurements/batch", json={"measurements": [item]}))


async def bulk(w: World, lines: list[dict[str, Any]]) -> tuple[Any, ...]:
    body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    resp = await w.me.post("/v1/bulk/import", content=body, headers={"Content-Type": "application/x-ndjson"})
    return ndjson_shape(resp)


async def bulk_lines(w: World, value: str, kind: str) -> tuple[Any, ...]:
    strength = await body_for(w.me, "strengths", client_id=w.ana)
    lines = {
        "client": [{"type": "client", "resource": {"display_name": "X", "identifiers": [
            {"system": "mrn", "value": value}]}}],
        "strength": [{"type": "strength", "resource": {**strength, "external_ids": [
            {"system": "ehr", "value": value}]}}],
        "measurement": [{"type": "measurement", "resource": {
            "client_id": w.ana, "marker_id": w.ana_marker["id"], "value": 2, "observed_at": NOW,
            "source": "moodapp", "external_id": value}}],
        "reference": [{"type": "goal", "resource": {
            "client_id": w.ana, "description": "Walk", "strength_ids": [{"external_id": f"ehr|{value}"}]}}],
    }[kind]
    return await bulk(w, lines)


GQL_CREATE_STRENGTH = """mutation($c: UUID!, $v: String!) { createStrength(input: {clientId: $c, domain: relational,
  kind: skill, label: "asks", externalIds: [{system: "ehr", value: $v}]}) { id externalIds { system value } } }"""
GQL_CREATE_MEASUREMENT = """mutation($c: UUID!, $m: UUID!, $v: String!) { createMeasurement(input: {clientId: $c,
  markerId: $m, value: 2, observedAt: "2026-11-20T09:30:00+01:00", source: "moodapp", externalId: $v}) { id } }"""
GQL_CREATE_CLIENT = """mutation($v: String!) { createClient(input: {displayName: "X",
  identifiers: [{system: "mrn", value: $v}]}) { id } }"""
GQL_UPDATE_CLIENT = """mutation($id: UUID!, $v: String!) { updateClient(id: $id, input: {
  identifiers: [{system: "mrn", value: $v}]}) { id } }"""
GQL_UPDATE_STRENGTH = """mutation($id: UUID!, $v: String!) { updateStrength(id: $id, input: {
  externalIds: [{system: "ehr", value: $v}]}) { id } }"""


async def graphql(w: World, value: str, kind: str) -> tuple[Any, ...]:
    doc, variables = {
        "create_strength": (GQL_CREATE_STRENGTH, {"c": w.ana}),
        "create_measurement": (GQL_CREATE_MEASUREMENT, {"c": w.ana, "m": w.ana_marker["id"]}),
        "create_client": (GQL_CREATE_CLIENT, {}),
        "update_client": (GQL_UPDATE_CLIENT, {"id": w.ana}),
        "update_strength": (GQL_UPDATE_STRENGTH, {"id": (await create(w.me, "strengths", client_id=w.ana))["id"]}),
    }[kind]
    return shape(await w.me.post("/graphql", json={"query": doc, "variables": {**variables, "v": value}}))


async def fhir_create(w: World, value: str, kind: str) -> tuple[Any, ...]:
    observation = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": MARKER_SYSTEM, "code": w.ana_marker["id"]}]},
        "subject": {"reference": f"Patient/{w.ana}"}, "effectiveDateTime": NOW, "valueQuantity": {"value": 4},
        "identifier": [{"system": "moodapp", "value": value}],
    }
    headers = {"Content-Type": FHIR_JSON}
    if kind == "conditional":
        headers["If-None-Exist"] = f"identifier=moodapp|{value}"
    resp = await w.me.post(f"{FHIR}/Observation", json=observation, headers=headers)
    return shape(resp)[:2] if resp.status_code < 300 else shape(resp)  # a created resource: status and type


PATHS: dict[str, tuple[Callable[[World, str], Awaitable[tuple[Any, ...]]], str]] = {
    "batch": (lambda w, v: batch(w, "moodapp", v), "measurements"),
    **{f"bulk {kind}": ((lambda k: lambda w, v: bulk_lines(w, v, k))(kind),
                        {"client": "clients", "strength": "strengths", "measurement": "measurements",
                         "reference": "strengths"}[kind])
       for kind in ("client", "strength", "measurement", "reference")},
    **{f"graphql {kind}": ((lambda k: lambda w, v: graphql(w, v, k))(kind),
                           "measurements" if "measurement" in kind else "clients" if "client" in kind else "strengths")
       for kind in ("create_strength", "create_measurement", "create_client", "update_client", "update_strength")},
    **{f"fhir {kind}": ((lambda k: lambda w, v: fhir_create(w, v, k))(kind), "measurements")
       for kind in ("create", "conditional")},
}
EXPECTED = {  # what the answer is, beyond being the same for both (a test that cannot pass by both failing)
    "batch": "'created'", "bulk client": "'patient_token_cannot_create'", "bulk strength": "'created'",
    "bulk measurement": "'created'", "bulk reference": "'reference_not_found'",
    "graphql create_client": "'patient_token_cannot_create'",
    "graphql update_client": "'patient_token_cannot_change_identifiers'",
    "graphql create_strength": "(200, (), ((", "graphql create_measurement": "(200, (), ((",
    "graphql update_strength": "(200, (), ((", "fhir create": "(201,", "fhir conditional": "(201,",
}


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_batch_bulk_graphql_and_fhir_cannot_tell_another_patients_identifier_from_a_random_one(world, path):
    w = world
    attempt, collection = PATHS[path]
    theirs = w.foreign[collection][1]
    foreign = await attempt(w, theirs)
    unknown = await attempt(w, f"R-{uuid.uuid4().hex}")
    assert foreign == unknown, (foreign, unknown)
    assert EXPECTED[path] in repr(foreign), foreign
    assert "duplicate" not in repr(foreign), foreign
    assert "INTERNAL" not in repr(foreign), foreign
    await _bens_records_unchanged(w)


async def test_bulk_client_line_is_a_403_line_and_the_stream_goes_on(world):
    w = world
    lines = [{"type": "client", "resource": {"display_name": "X"}},
             {"type": "strength", "resource": await body_for(w.me, "strengths", client_id=w.ana)}]
    resp = await w.me.post("/v1/bulk/import", content=b"".join(orjson.dumps(x) + b"\n" for x in lines),
                           headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 200
    results = [orjson.loads(x) for x in resp.content.splitlines()]
    assert [r["status"] for r in results] == ["error", "created"]
    assert results[0]["problem"]["status"] == 403
    assert results[0]["problem"]["code"] == "patient_token_cannot_create"
