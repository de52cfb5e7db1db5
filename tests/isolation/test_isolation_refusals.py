"""Writes a patient-context token may never make are 403 problems, checked before the write; and a write that
row-level security refuses anyway is a 4xx like any refusal (REST, GraphQL, a bulk import line), never a 500."""

from __future__ import annotations

import uuid

import orjson
import pytest

from service.collections import identifiers
from tests.support.factories import body_for, create


@pytest.fixture
async def patient(api):
    org = await api.org()
    staff = api.client(await api.token(org, "system/*.cruds"))
    ana = await create(staff, "clients", identifiers=[{"system": "mrn", "value": "A-1"}])
    me = api.client(await api.token(org, "patient/*.cruds", patient=uuid.UUID(ana["id"])))
    return staff, me, ana


def problem(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["code"] == code, body
    assert body["type"].endswith("/" + code)
    return body


async def test_patient_tokens_cannot_create_clients_nor_change_identifiers(patient):
    staff, me, ana = patient
    problem(await me.post("/v1/clients", json={"display_name": "Me"}), 403, "patient_token_cannot_create")
    problem(await me.put("/v1/clients?identifier=mrn|new", json={"display_name": "Me"}), 403,
            "patient_token_cannot_create")
    problem(await me.patch(f"/v1/clients/{ana['id']}", json={"identifiers": []}), 403,
            "patient_token_cannot_change_identifiers")
    # Its own record may still change, identifiers sent back unchanged included; and found by its own identifier.
    same = [{"system": "mrn", "value": "A-1"}]
    resp = await me.patch(f"/v1/clients/{ana['id']}", json={"preferred_future": "Walking", "identifiers": same})
    assert resp.status_code == 200, resp.text
    resp = await me.put("/v1/clients?identifier=mrn|A-1", json={"display_name": "Ana", "identifiers": same})
    assert resp.status_code == 200, resp.text
    assert (await staff.get("/v1/clients")).json()["data"][0]["identifiers"] == same
    assert len((await staff.get("/v1/clients")).json()["data"]) == 1


async def test_graphql_create_client_with_a_patient_token_is_forbidden(patient):
    _staff, me, _ana = patient
    body = (await me.post("/graphql", json={"query": 'mutation { createClient(input: {displayName: "x"}) { id } }'}
                          )).json()
    assert body["data"] == {"createClient": None}
    assert [(e["extensions"]["code"], e["extensions"]["reason"]) for e in body["errors"]] == [
        ("FORBIDDEN", "patient_token_cannot_create")]


@pytest.fixture
def without_the_checks(monkeypatch):
    """The service's own checks switched off: what row-level security alone answers."""
    monkeypatch.setattr(identifiers, "check_identity_create", lambda who, coll: None)


async def test_a_write_row_level_security_refuses_is_a_403_on_rest(patient, without_the_checks):
    staff, me, _ana = patient
    problem(await me.post("/v1/clients", json={"display_name": "Me"}), 403, "write_refused")
    problem(await me.put("/v1/clients?identifier=mrn|new", json={"display_name": "Me"}), 403, "write_refused")
    assert len((await staff.get("/v1/clients")).json()["data"]) == 1


async def test_a_write_row_level_security_refuses_is_forbidden_in_graphql(patient, without_the_checks):
    _staff, me, _ana = patient
    resp = await me.post("/graphql", json={"query": 'mutation { createClient(input: {displayName: "x"}) { id } }'})
    assert resp.status_code == 200
    assert [(e["extensions"]["code"], e["extensions"]["reason"]) for e in resp.json()["errors"]] == [
        ("FORBIDDEN", "write_refused")]


async def test_a_bulk_line_row_level_security_refuses_is_that_lines_error(patient, without_the_checks):
    staff, me, ana = patient
    lines = [{"type": "strength", "resource": await body_for(me, "strengths", client_id=ana["id"])},
             {"type": "client", "resource": {"display_name": "X"}},
             {"type": "strength", "resource": await body_for(me, "strengths", client_id=ana["id"])}]
    resp = await me.post("/v1/bulk/import", content=b"".join(orjson.dumps(x) + b"\n" for x in lines),
                         headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 200
    results = [orjson.loads(x) for x in resp.content.splitlines()]
    assert [(r["line"], r["status"]) for r in results] == [(1, "created"), (2, "error"), (3, "created")]
    assert results[1]["problem"]["status"] == 403
    assert results[1]["problem"]["code"] == "write_refused"
    stored = {s["id"] for s in (await staff.get(f"/v1/strengths?client_id={ana['id']}")).json()["data"]}
    assert stored == {results[0]["id"], results[2]["id"]}  # what the stream says was stored, was
    assert len((await staff.get("/v1/clients")).json()["data"]) == 1
