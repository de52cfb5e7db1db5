"""Every operation of the OpenAPI document is guarded: no token 401, no scope 403, another organization 404.

The operations are read from the live OpenAPI document, so a route added later is covered without
editing this file, and a route added without a scope declaration fails it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import FastAPI

from service.collections.registry import REGISTRY
from tests.support.factories import COLLECTIONS, ORG_PATCHES, PATCHES, body_for, create

PUBLIC = {("GET", "/.well-known/oauth-authorization-server"), ("GET", "/.well-known/jwks.json"),
          ("POST", "/oauth/token"), ("GET", "/fhir/R4/.well-known/smart-configuration"),
          ("POST", "/oauth/introspect"), ("POST", "/oauth/revoke"),  # these two authenticate the app itself
          ("GET", "/oauth/authorize"),  # a patient's app, before it has a token: the link code is its login
          # FHIR discovery and terminology: no client data (SMART App Launch: metadata is public).
          ("GET", "/fhir/R4/metadata"), ("GET", "/fhir/R4/CodeSystem/{code_system_id}"),
          ("GET", "/fhir/R4/Questionnaire/{questionnaire_id}")}
FHIR_COLLECTIONS = {"Patient": "clients", "Goal": "goals", "Observation": "measurements", "Flag": "safety-alerts",
                    "QuestionnaireResponse": "measurements", "Group": "group", "$export": "bulk-export",
                    "$export-status": "bulk-export"}
KICK_OFF = {"Prefer": "respond-async"}  # Bulk Data kick-off needs it; the status and file routes ignore it


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                out.append((method.upper(), path, op))
    return out


def required_scopes(op: dict[str, Any]) -> list[str]:
    return [s for req in op.get("security", []) for s in req.get("OAuth2", [])]


def unguarded(app: FastAPI) -> list[tuple[str, str]]:
    """Operations that declare no scope (public discovery and token endpoints aside)."""
    return [(m, p) for m, p, op in operations(app) if (m, p) not in PUBLIC and not required_scopes(op)]


def test_every_operation_declares_a_scope(api):
    assert unguarded(api.app) == []


def test_a_route_without_a_scope_declaration_is_caught(db):
    from service.app import create_app

    app = create_app(db.settings())

    @app.get("/v1/leak")
    async def leak() -> dict[str, str]:
        return {"secret": "no scope"}

    app.openapi_schema = None
    assert unguarded(app) == [("GET", "/v1/leak")]


def collection_of(path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[0] == "fhir":
        return FHIR_COLLECTIONS[parts[2]]
    return parts[2] if parts[1] == "history" else parts[1]


def fhir_body(path: str, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A FHIR Observation of A's measurement marker (POST /fhir/R4/Observation), or a PHQ-9 response about A's
    patient (POST /fhir/R4/QuestionnaireResponse)."""
    m = records["measurements"]
    if path.endswith("/QuestionnaireResponse"):
        return {"resourceType": "QuestionnaireResponse", "questionnaire": "http://loinc.org/q/44249-1",
                "status": "completed", "subject": {"reference": f"Patient/{m['client_id']}"},
                "authored": "2026-11-20T09:30:00+01:00",
                "item": [{"linkId": f"/{code}", "answer": [{"valueInteger": 0}]} for code in (
                    "44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3",
                    "44260-8")]}
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{m['client_id']}"},
            "code": {"coding": [{"system": "https://strengths-api.dev/fhir/CodeSystem/outcome-marker",
                                 "code": m["marker_id"]}]},
            "effectiveDateTime": "2026-11-20T09:30:00+01:00", "valueQuantity": {"value": 4}}


def error_code(r) -> str:
    body = r.json()
    return body["issue"][0]["code"] if body.get("resourceType") == "OperationOutcome" else body["code"]


async def seed(c) -> dict[str, dict[str, Any]]:
    records = {name: await create(c, name) for name in [*COLLECTIONS, *ORG_PATCHES]}
    # The caseload Group (its id is the organization's) and a Bulk Data export job of this organization's app.
    records["group"] = {"id": (await c.get("/fhir/R4/Group")).json()["entry"][0]["resource"]["id"]}
    status = (await c.get("/fhir/R4/$export", headers=KICK_OFF)).headers["content-location"]
    records["bulk-export"] = {"id": status.rsplit("/", 1)[1]}
    return records


def fill(path: str, records: dict[str, dict[str, Any]], *, random_ids: bool = False) -> str:
    if "{" not in path:
        return path
    coll = collection_of(path)
    rid = str(uuid.uuid4()) if random_ids or "{" not in path else records[coll]["id"]
    out = path
    for name in [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]:
        out = out.replace("{" + name + "}", "1" if name == "version_id" else rid)
    return out


async def check_bulk_import(anonymous, narrow, b, records) -> None:
    line = json.dumps({"type": "strength", "resource": {"client_id": records["strengths"]["client_id"],
                                                         "domain": "personal", "kind": "skill", "label": "x"}})
    kw = {"content": line.encode() + b"\n", "headers": {"Content-Type": "application/x-ndjson"}}
    assert (await anonymous.post("/v1/bulk/import", **kw)).status_code == 401
    refused = await narrow.post("/v1/bulk/import", **kw)
    assert refused.status_code == 403
    assert 'scope="system/*.c"' in refused.headers["www-authenticate"]
    theirs = await b.post("/v1/bulk/import", **kw)
    result = json.loads(theirs.text.splitlines()[0])
    assert result["status"] == "error"
    assert result["problem"]["errors"][0]["field"] == "client_id"


async def test_every_operation_refuses_as_the_contract_says(api):
    org_a, org_b = await api.org("A"), await api.org("B")
    everything = "system/*.cruds system/AuditEvent.s"  # audit access is always named (CONTRACT.md section 2)
    a = api.client(await api.token(org_a, everything))
    b = api.client(await api.token(org_b, everything))
    narrow = api.client(await api.token(org_a, "system/AuditEvent.r"))
    anonymous = api.client(None)
    records = await seed(a)
    checked = 0
    for method, path, op in operations(api.app):
        if (method, path) in PUBLIC:
            continue
        coll = collection_of(path)
        body: dict[str, Any] | None = None
        fhir = path.startswith("/fhir/")
        if path == "/v1/bulk/import":
            await check_bulk_import(anonymous, narrow, b, records)
            checked += 1
            continue
        if method == "POST" and fhir:
            body = fhir_body(path, records)
        elif path.endswith("/app-links"):
            body = {"app_id": "app_any"}  # the client is looked up first: another organization's is 404
        elif path == "/v1/measurements/batch":
            body = {"measurements": [await body_for(a, "measurements")]}
        elif method in ("POST", "PUT") and (coll in PATCHES or coll in ORG_PATCHES):
            body = await body_for(a, coll)
        elif method == "PATCH":
            body = {**PATCHES, **ORG_PATCHES}[coll]
        url = fill(path, records)
        extra = KICK_OFF if fhir and "$export" in path else {}

        r = await anonymous.request(method, url, json=body, headers=extra)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")

        r = await narrow.request(method, url, json=body, headers=extra)
        assert r.status_code == 403, (method, path, r.status_code)
        needed = required_scopes(op)[0]
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        assert f'scope="{needed}"' in r.headers["www-authenticate"], (r.headers["www-authenticate"], needed)

        # Another organization's id answers exactly as an unknown id.
        theirs = await b.request(method, url, json=body, headers=extra)
        unknown = await b.request(method, fill(path, records, random_ids=True), json=body, headers=extra)
        if "{" in path:
            assert theirs.status_code == unknown.status_code == 404, (method, path, theirs.status_code)
            assert error_code(theirs) == error_code(unknown)
        elif method == "POST" and (coll == "clients" or coll in ORG_PATCHES):  # B's own, never A's
            assert theirs.status_code == 201
            assert theirs.json()["id"] not in [x["id"] for x in (await a.get(f"/v1/{coll}")).json()["data"]]
        elif method == "POST" and fhir:  # a resource about A's patient: as for a patient that does not exist
            assert theirs.status_code == 422, (method, path, theirs.text)
            assert theirs.json()["resourceType"] == "OperationOutcome"
            assert theirs.json()["issue"][0]["expression"] == [f"{body['resourceType']}.subject"]
        elif fhir and "$export" in path:  # B's own export: a job of B's, which A's status URL never names
            assert theirs.status_code == 202, (method, path, theirs.text)
            assert records["bulk-export"]["id"] not in theirs.headers["content-location"]
        elif path == "/v1/measurements/batch":  # the item fails as for a client that does not exist
            assert theirs.status_code == 200, theirs.text
            result = theirs.json()["results"][0]
            assert result["status"] == "error"
            assert result["problem"]["errors"][0]["field"] == "client_id"
        elif method == "POST":  # B posting records under A's client: as for a client that does not exist
            assert theirs.status_code == 422, (method, path, theirs.text)
            assert "client_id" in [e["field"] for e in theirs.json()["errors"]]
        elif method == "GET" and theirs.headers["content-type"].startswith("application/x-ndjson"):
            assert theirs.status_code == 200
            assert not any(r["id"] in theirs.text for r in records.values()), path
        elif method == "GET" and "data" not in theirs.json():  # a summary (e.g. the caseload's): none of A's ids
            assert theirs.status_code == 200
            a_ids = {r["id"] for r in records.values()} | {r["client_id"] for r in records.values() if "client_id" in r}
            assert not any(i in theirs.text for i in a_ids), path
        elif method == "GET":
            assert theirs.status_code == 200
            a_ids = {r["id"] for r in records.values()} | {r["client_id"] for r in records.values() if "client_id" in r}
            found = ({e["resource"]["id"].rpartition("-")[2] if len(e["resource"]["id"]) > 36 else e["resource"]["id"]
                      for e in theirs.json().get("entry", [])} if fhir else {x["id"] for x in theirs.json()["data"]})
            assert not a_ids & found, path
        checked += 1
    assert checked >= 5 * len(REGISTRY)
    # Nothing of A's changed.
    for name in [*COLLECTIONS, *ORG_PATCHES]:
        got = await a.get(f"/v1/{name}/{records[name]['id']}")
        assert got.json()["version"] == 1, name


async def test_a_patient_token_reaches_only_its_own_client(api):
    """Every operation on an id: a patient-context token of another client of the same organization gets 404,
    exactly as for an unknown id."""
    org = await api.org("A")
    a = api.client(await api.token(org, "system/*.cruds"))
    records = await seed(a)
    other_client = await create(a, "clients")
    patient = api.client(await api.token(org, "patient/*.cruds", patient=uuid.UUID(other_client["id"])))
    checked = 0
    for method, path, _op in operations(api.app):
        if (method, path) in PUBLIC or "{" not in path:
            continue
        if path.startswith("/v1/webhook-subscriptions"):
            continue  # organization-wide: a patient token is refused outright (403, tests/webhooks/test_webhooks.py)
        if "/app-links" in path:
            continue  # clinician-side only: a patient token is refused outright (403, tests/oauth/test_app_links.py)
        if path.startswith("/fhir/R4/Group/"):
            continue  # the caseload: a patient token reads it with its own patient only (tests/fhir/test_fhir_bulk.py)
        coll = collection_of(path)
        body = PATCHES.get(coll) if method == "PATCH" else None
        theirs = await patient.request(method, fill(path, records), json=body)
        unknown = await patient.request(method, fill(path, records, random_ids=True), json=body)
        assert theirs.status_code == unknown.status_code == 404, (method, path, theirs.status_code, theirs.text)
        assert error_code(theirs) == error_code(unknown)
        checked += 1
    assert checked >= 4 * len(REGISTRY)
    own = (await patient.get("/v1/strengths")).json()["data"]
    assert own == []
