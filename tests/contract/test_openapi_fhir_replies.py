"""What the FHIR facade and the OAuth endpoints answer matches the typed schemas the OpenAPI document declares
for them (resources by id, search Bundles, CapabilityStatement, OperationOutcome, token and introspection)."""

from __future__ import annotations

import base64
from typing import Any

from jsonschema import Draft202012Validator

from tests.support.factories import NOW, create

ALL = "system/*.cruds"
FHIR = "/fhir/R4"


def check(doc: dict[str, Any], path: str, method: str, status: str, body: Any) -> None:
    content = doc["paths"][path][method]["responses"][status]["content"]
    (media,) = content.values()
    schema = {**media["schema"], "components": doc["components"]}
    errors = [(e.json_path, e.message) for e in Draft202012Validator(schema).iter_errors(body)]
    assert not errors, (path, errors[:5])


async def test_fhir_replies_match_their_declared_schemas(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    doc = (await api.http.get("/openapi.json")).json()
    client = await create(c, "clients")
    await create(c, "goals", client_id=client["id"])
    await create(c, "protective-factors", client_id=client["id"])
    await create(c, "exceptions", client_id=client["id"])
    marker = await create(c, "outcome-markers", client_id=client["id"], kind="instrument", name="PHQ-9",
                          instrument="phq9")
    r = await c.post("/v1/measurements", json={"client_id": client["id"], "marker_id": marker["id"],
                                               "observed_at": NOW, "items": [1, 1, 1, 1, 1, 1, 1, 1, 1]})
    assert r.status_code == 201, r.text

    meta = await api.http.get(f"{FHIR}/metadata")
    check(doc, f"{FHIR}/metadata", "get", "200", meta.json())
    for kind in ("Patient", "Goal", "Observation", "Flag", "QuestionnaireResponse", "Group"):
        found = await c.get(f"{FHIR}/{kind}")
        assert found.status_code == 200, (kind, found.text)
        bundle = found.json()
        check(doc, f"{FHIR}/{kind}", "get", "200", bundle)
        assert bundle["entry"], kind
        for entry in bundle["entry"]:
            item = f"{FHIR}/{kind}/{{group_id}}" if kind == "Group" else f"{FHIR}/{kind}/{{resource_id}}"
            read = await c.get(f"{FHIR}/{kind}/{entry['resource']['id']}")
            assert read.status_code == 200, read.text
            check(doc, item, "get", "200", read.json())
    missing = await c.get(f"{FHIR}/Patient/00000000-0000-0000-0000-000000000000")
    check(doc, f"{FHIR}/Patient/{{resource_id}}", "get", "404", missing.json())
    anonymous = await api.http.get(f"{FHIR}/Patient")
    check(doc, f"{FHIR}/Patient", "get", "401", anonymous.json())


async def test_oauth_replies_match_their_declared_schemas(api):
    org = await api.org()
    app = await api.register_app(org, "system/Strength.rs")
    basic = {"Authorization": "Basic " + base64.b64encode(
        f"{app['client_id']}:{app['client_secret']}".encode()).decode()}
    doc = (await api.http.get("/openapi.json")).json()
    token = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=basic)
    check(doc, "/oauth/token", "post", "200", token.json())
    bad = await api.http.post("/oauth/token", data={"grant_type": "password"}, headers=basic)
    check(doc, "/oauth/token", "post", str(bad.status_code), bad.json())
    seen = await api.http.post("/oauth/introspect", data={"token": token.json()["access_token"]}, headers=basic)
    check(doc, "/oauth/introspect", "post", "200", seen.json())
    assert seen.json()["active"] is True
    for path in ("/.well-known/oauth-authorization-server", f"{FHIR}/.well-known/smart-configuration",
                 "/.well-known/jwks.json"):
        check(doc, path, "get", "200", (await api.http.get(path)).json())
