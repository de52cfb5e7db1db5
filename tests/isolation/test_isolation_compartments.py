"""Identifier compartments (service/collections/identifiers.py) from the clinician's side: a patient app's
identifiers and an EHR's never make two records of one client for one identifier, and clinicians' identifiers
stay unique per organization."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.support.factories import NOW, body_for, create


@pytest.fixture
async def setup(api):
    org = await api.org()
    staff = api.client(await api.token(org, "system/*.cruds"))
    ana, ben = await create(staff, "clients"), await create(staff, "clients")
    me = api.client(await api.token(org, "patient/*.cruds", patient=uuid.UUID(ana["id"])))
    marker = await create(staff, "outcome-markers", client_id=ana["id"])
    return staff, me, ana, ben, marker


def item(client, marker, external_id, value=3):
    return {"client_id": client["id"], "marker_id": marker["id"], "value": value, "observed_at": NOW,
            "source": "moodapp", "external_id": external_id}


async def measurements_of(staff, client) -> list[dict]:
    return (await staff.get(f"/v1/measurements?client_id={client['id']}&limit=500")).json()["data"]


async def test_a_patient_app_finds_its_clients_own_identifiers(setup):
    staff, me, ana, _ben, marker = setup
    theirs = await create(staff, "measurements", **item(ana, marker, "m-1"))
    batch = (await me.post("/v1/measurements/batch", json={"measurements": [item(ana, marker, "m-1", 5)]})).json()
    assert batch["results"] == [{"index": 0, "status": "duplicate", "id": theirs["id"]}]
    put = await me.put("/v1/measurements?external_id=moodapp|m-1", json=item(ana, marker, "m-1", 6))
    assert put.status_code == 200
    assert put.json()["id"] == theirs["id"]
    assert [m["value"] for m in await measurements_of(staff, ana)] == [6]


async def test_an_ehr_finds_what_the_clients_app_posted_and_never_doubles_it(setup):
    staff, me, ana, _ben, marker = setup
    mine = await create(me, "measurements", **item(ana, marker, "m-2"))
    batch = (await staff.post("/v1/measurements/batch", json={"measurements": [item(ana, marker, "m-2", 9)]})).json()
    assert batch["results"] == [{"index": 0, "status": "duplicate", "id": mine["id"]}]
    again = await staff.post("/v1/measurements", json=item(ana, marker, "m-2"))
    assert again.status_code == 409
    put = await staff.put("/v1/measurements?external_id=moodapp|m-2", json=item(ana, marker, "m-2", 7))
    assert put.status_code == 200
    assert put.json()["id"] == mine["id"]
    line = orjson.dumps({"type": "measurement", "resource": item(ana, marker, "m-2", 8)}) + b"\n"
    resp = await staff.post("/v1/bulk/import", content=line, headers={"Content-Type": "application/x-ndjson"})
    assert orjson.loads(resp.content) == {"line": 1, "status": "updated", "id": mine["id"]}
    assert [(m["id"], m["value"]) for m in await measurements_of(staff, ana)] == [(mine["id"], 8)]


async def test_the_same_identifier_for_two_clients_is_one_record_each(setup):
    staff, me, ana, ben, _marker = setup
    bens = await create(staff, "strengths", client_id=ben["id"], external_ids=[{"system": "ehr", "value": "s-1"}])
    anas = await create(me, "strengths", client_id=ana["id"], external_ids=[{"system": "ehr", "value": "s-1"}])
    listed = (await staff.get("/v1/strengths?external_id=ehr|s-1")).json()["data"]
    assert sorted(s["id"] for s in listed) == sorted([bens["id"], anas["id"]])
    for client, record in ((ana, anas), (ben, bens)):
        body = await body_for(staff, "strengths", client_id=client["id"], label="renamed")
        put = await staff.put("/v1/strengths?external_id=ehr|s-1", json=body)
        assert put.status_code == 200, put.text
        assert put.json()["id"] == record["id"]
    # A clinician-side write of it for Ana conflicts with Ana's own; among clinicians it stays unique.
    dup = await staff.post("/v1/strengths", json=await body_for(
        staff, "strengths", client_id=ana["id"], external_ids=[{"system": "ehr", "value": "s-1"}]))
    assert dup.status_code == 409
    other = await create(staff, "clients")
    dup = await staff.post("/v1/strengths", json=await body_for(
        staff, "strengths", client_id=other["id"], external_ids=[{"system": "ehr", "value": "s-1"}]))
    assert dup.status_code == 409
    assert (await me.get("/v1/strengths?external_id=ehr|s-1")).json()["data"] == [
        {**anas, **{k: v for k, v in (await me.get(f"/v1/strengths/{anas['id']}")).json().items()}}]
