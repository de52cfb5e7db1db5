"""FHIR: absolute URLs from PUBLIC_URL whatever the Host header says; unsupported search parameters are a 400
naming them unless the request is lenient; a subject on another server's base is a 422 OperationOutcome."""

from __future__ import annotations

import uuid

import pytest

from tests.support.factories import NOW, create
from tests.support.fhir import validate
from tests.support.harness import Api

FHIR = "/fhir/R4"
FHIR_JSON = "application/fhir+json"
PUBLIC = "https://api.clinic.example/strengths"
MARKER_SYSTEM = "https://strengths-api.dev/fhir/CodeSystem/outcome-marker"
EVIL = {"Host": "evil.example"}


@pytest.fixture
async def public(db):
    async with Api.start(db, public_url=PUBLIC) as api:
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        client = await create(c, "clients")
        marker = await create(c, "outcome-markers", client_id=client["id"])
        for _ in range(3):
            await create(c, "measurements", client_id=client["id"], marker_id=marker["id"])
        yield c, client, marker


def observation(patient_reference: str, marker_id: str) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": MARKER_SYSTEM, "code": marker_id}]},
            "subject": {"reference": patient_reference}, "effectiveDateTime": NOW, "valueQuantity": {"value": 5}}


async def test_links_full_urls_and_location_are_on_public_url_whatever_the_host(public):
    c, client, marker = public
    resp = await c.get(f"{FHIR}/Observation?patient=Patient/{client['id']}&_count=1", headers=EVIL)
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    validate(bundle)
    urls = [link["url"] for link in bundle["link"]] + [e["fullUrl"] for e in bundle["entry"]]
    assert {link["relation"] for link in bundle["link"]} == {"self", "next"}
    assert all(u.startswith(f"{PUBLIC}/fhir/R4/") for u in urls), urls
    assert not any("evil.example" in u for u in urls)
    nxt = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    follow = await c.get(nxt.removeprefix(PUBLIC), headers=EVIL)
    assert follow.status_code == 200
    assert follow.json()["entry"]

    created = await c.post(f"{FHIR}/Observation", json=observation(f"Patient/{client['id']}", marker["id"]),
                           headers={**EVIL, "Content-Type": FHIR_JSON})
    assert created.status_code == 201, created.text
    assert created.headers["location"].startswith(f"{PUBLIC}/fhir/R4/Observation/")
    history = (await c.get(f"{FHIR}/Observation/{created.json()['id']}/_history", headers=EVIL)).json()
    assert all(u.startswith(PUBLIC) for u in [history["link"][0]["url"], *(e["fullUrl"] for e in history["entry"])])
    meta = (await c.get(f"{FHIR}/metadata", headers=EVIL)).json()
    assert meta["implementation"]["url"] == f"{PUBLIC}/fhir/R4"


async def test_an_unsupported_search_parameter_is_a_400_naming_it(public):
    c, client, _marker = public
    for query in ("_summary=count", "foo=1", "code:text=x", "patient=Patient/x&_elements=id"):
        resp = await c.get(f"{FHIR}/Observation?{query}")
        assert resp.status_code == 400, (query, resp.text)
        body = resp.json()
        validate(body)
        assert body["resourceType"] == "OperationOutcome"
        name = query.split("&")[-1].split("=")[0]
        assert repr(name) in body["issue"][0]["diagnostics"], body
    ok = await c.get(f"{FHIR}/Observation?patient=Patient/{client['id']}&_format=json&_pretty=true")
    assert ok.status_code == 200


async def test_a_lenient_search_ignores_them_and_leaves_them_out_of_the_self_link(public):
    c, client, _marker = public
    strict = await c.get(f"{FHIR}/Observation?patient=Patient/{client['id']}")
    resp = await c.get(f"{FHIR}/Observation?patient=Patient/{client['id']}&foo=1&_summary=count",
                       headers={"Prefer": "return=representation, handling=lenient"})
    assert resp.status_code == 200, resp.text
    self_link = next(link["url"] for link in resp.json()["link"] if link["relation"] == "self")
    assert "foo" not in self_link
    assert "_summary" not in self_link
    assert self_link == f"{PUBLIC}/fhir/R4/Observation?patient=Patient%2F{client['id']}"
    assert [e["fullUrl"] for e in resp.json()["entry"]] == [e["fullUrl"] for e in strict.json()["entry"]]


async def test_a_subject_on_another_servers_base_is_a_422(public):
    c, client, marker = public
    before = len((await c.get(f"/v1/measurements?client_id={client['id']}")).json()["data"])
    for reference in (f"https://evil.example/fhir/R4/Patient/{client['id']}",
                      f"http://testserver/fhir/R4/Patient/{client['id']}"):  # the Host's base is not ours either
        resp = await c.post(f"{FHIR}/Observation", json=observation(reference, marker["id"]),
                            headers={"Content-Type": FHIR_JSON})
        assert resp.status_code == 422, resp.text
        body = resp.json()
        validate(body)
        assert body["issue"][0]["expression"] == ["Observation.subject"]
        assert body["issue"][0]["details"]["coding"][0]["code"] == "foreign_reference"
    for reference in (f"Patient/{client['id']}", f"{PUBLIC}/fhir/R4/Patient/{client['id']}"):
        resp = await c.post(f"{FHIR}/Observation", json=observation(reference, marker["id"]),
                            headers={"Content-Type": FHIR_JSON})
        assert resp.status_code == 201, resp.text
    after = len((await c.get(f"/v1/measurements?client_id={client['id']}")).json()["data"])
    assert after == before + 2
    search = await c.get(f"{FHIR}/Observation?patient=https://evil.example/fhir/R4/Patient/{uuid.uuid4()}")
    assert search.status_code == 400
    own = await c.get(f"{FHIR}/Observation?patient={PUBLIC}/fhir/R4/Patient/{client['id']}")
    assert own.status_code == 200
    assert len(own.json()["entry"]) == after
