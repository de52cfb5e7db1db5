"""Patient-context tokens: an app bound to one client gets tokens with `patient` and only patient/ scopes,
reaching that client's records and nothing else (another client's records are 404, exactly as unknown)."""

from __future__ import annotations

import uuid

import pytest
from joserfc import jws

from tests.support.oauth import register

STRENGTH = {"domain": "personal", "kind": "skill", "label": "help-seeking"}


async def setup_two_clients(api):
    org = await api.org()
    staff = api.client(await api.token(org, "system/Client.cruds system/Strength.cruds"))
    ana = (await staff.post("/v1/clients", json={"display_name": "Ana"})).json()
    ben = (await staff.post("/v1/clients", json={"display_name": "Ben"})).json()
    for who in (ana, ben):
        resp = await staff.post("/v1/strengths", json={**STRENGTH, "client_id": who["id"]})
        assert resp.status_code == 201, resp.text
    return org, ana, ben


async def patient_token(api, org, client_id, scopes="patient/Client.rs patient/Strength.cruds"):
    creds = await register(api, org, scopes, patient=uuid.UUID(client_id))
    assert creds["patient"] == client_id
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(creds["client_id"], creds["client_secret"]))
    assert resp.status_code == 200, resp.text
    return creds, resp.json()


async def test_patient_token_carries_patient_and_only_patient_scopes(api):
    org, ana, _ben = await setup_two_clients(api)
    creds, body = await patient_token(api, org, ana["id"])
    assert body["patient"] == ana["id"]
    assert body["scope"] == "patient/Client.rs patient/Strength.cruds"
    import orjson

    claims = orjson.loads(jws.extract_compact(body["access_token"].encode()).payload)
    assert claims["patient"] == ana["id"]
    # asking for a system scope grants nothing
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "system/Client.rs"},
                               auth=(creds["client_id"], creds["client_secret"]))
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_scope")


async def test_apps_bound_to_a_patient_cannot_hold_system_scopes(api):
    org, ana, _ = await setup_two_clients(api)
    with pytest.raises(ValueError, match="patient/ scopes only"):
        await register(api, org, "system/Client.rs", patient=uuid.UUID(ana["id"]))


async def test_patient_token_reaches_its_client_only(api):
    org, ana, ben = await setup_two_clients(api)
    _, body = await patient_token(api, org, ana["id"])
    me = api.client(body["access_token"])

    assert (await me.get(f"/v1/clients/{ana['id']}")).status_code == 200
    listed = (await me.get("/v1/clients")).json()["data"]
    assert [c["id"] for c in listed] == [ana["id"]]
    strengths = (await me.get("/v1/strengths")).json()["data"]
    assert {s["client_id"] for s in strengths} == {ana["id"]}
    assert (await me.get(f"/v1/strengths?client_id={ben['id']}")).json()["data"] == []

    other = await me.get(f"/v1/clients/{ben['id']}")
    unknown = await me.get(f"/v1/clients/{uuid.uuid4()}")
    assert other.status_code == unknown.status_code == 404
    assert other.json()["type"] == unknown.json()["type"]
    assert other.json()["title"] == unknown.json()["title"]

    ben_strength = (await api.client(await api.token(org, "system/Strength.cruds")).get(
        f"/v1/strengths?client_id={ben['id']}")).json()["data"][0]
    assert (await me.get(f"/v1/strengths/{ben_strength['id']}")).status_code == 404
    assert (await me.patch(f"/v1/strengths/{ben_strength['id']}", json={"label": "x"})).status_code == 404
    assert (await me.delete(f"/v1/strengths/{ben_strength['id']}")).status_code == 404
    assert (await me.get(f"/v1/history/strengths/{ben_strength['id']}")).status_code == 404


async def test_patient_token_cannot_write_for_another_client(api):
    org, ana, ben = await setup_two_clients(api)
    _, body = await patient_token(api, org, ana["id"])
    me = api.client(body["access_token"])
    resp = await me.post("/v1/strengths", json={**STRENGTH, "client_id": ben["id"]})
    assert resp.status_code == 422, resp.text  # as any reference to a record it cannot see
    assert resp.json()["errors"][0]["field"] == "client_id"
    count = await api.db.fetchval("SELECT count(*) FROM strengths WHERE client_id = $1", uuid.UUID(ben["id"]))
    assert count == 1
    resp = await me.post("/v1/strengths", json={**STRENGTH, "client_id": ana["id"]})
    assert resp.status_code == 201, resp.text


async def test_patient_token_cannot_create_clients_or_use_system_routes(api):
    org, ana, _ = await setup_two_clients(api)
    _, body = await patient_token(api, org, ana["id"])
    me = api.client(body["access_token"])
    resp = await me.post("/v1/clients", json={"display_name": "Cy"})
    assert resp.status_code == 403
    assert 'scope="patient/Client.c"' in resp.headers["www-authenticate"]
