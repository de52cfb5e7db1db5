"""Structured JSON logs carry request ids and never client data or credentials: the demo caseload goes
through the API, is read back every way there is, and its names never reach the logs."""

from __future__ import annotations

import io
import json
import logging

from service.auth.apps import create_app_record
from service.db import make_engine
from service.demo import load_demo
from service.logs import configure_logging

NAMES = ["Maya", "Daniel", "Amara"]


async def test_the_demo_through_the_api_leaves_no_client_data_or_tokens_in_the_logs(api):
    stream = io.StringIO()
    handler = configure_logging("DEBUG", stream)
    try:
        engine = make_engine(api.db.owner_url, api.db.settings(), pool=False)
        try:
            async with engine.begin() as conn:
                demo = await load_demo(conn)
                org_id = demo["organization"]["id"]
                creds = await create_app_record(conn, org_id=org_id, name="reader",
                                                scopes="system/*.cruds system/AuditEvent.s")
        finally:
            await engine.dispose()
        resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                   auth=(creds["client_id"], creds["client_secret"]))
        token = resp.json()["access_token"]
        c = api.client(token)
        # writes through the API, one of them refused, one carrying a name in a bad field
        made = await c.post("/v1/clients", json={"display_name": "Maya Second", "preferred_future": "Daniel's words"})
        assert made.status_code == 201
        bad = await c.post("/v1/clients", json={"display_name": "Amara", "nickname": "Amara the brave"})
        assert bad.status_code == 422
        assert (await c.get("/v1/clients?identifier=urn:mrn|Maya-MRN")).status_code == 200
        # read everything back
        clients = (await c.get("/v1/clients?limit=500")).json()["data"]
        assert any("Maya" in x["display_name"] for x in clients)
        for name in ("strengths", "protective-factors", "exceptions", "goals", "milestones", "outcome-markers",
                     "measurements", "strength-uses", "experiments", "safety-alerts"):
            assert (await c.get(f"/v1/{name}?limit=500")).status_code == 200
        for client in clients:
            cid = client["id"]
            assert (await c.get(f"/v1/clients/{cid}?include=strengths,goals")).status_code == 200
            for tail in ("progress", "summary", "progress.svg"):
                assert (await c.get(f"/v1/clients/{cid}/{tail}")).status_code in (200, 404, 422)
            assert (await c.get(f"/fhir/R4/Patient/{cid}")).status_code == 200
        assert (await c.get("/fhir/R4/Observation?_count=100")).status_code == 200
        gql = await c.post("/graphql", json={"query": "{ clients(first: 50) { edges { node { display_name } } } }"})
        assert gql.status_code == 200
        export = await c.get("/v1/bulk/export")
        assert "Maya" in export.text
        assert (await c.get("/v1/changes")).status_code == 200
        assert (await c.get("/v1/audit-events")).status_code == 200
        assert (await api.http.get("/v1/clients", headers={"Authorization": f"Bearer {token}x"})).status_code == 401
    finally:
        logging.getLogger().removeHandler(handler)
        configure_logging()

    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    access = [x for x in lines if x.get("event") == "request"]
    assert len(access) >= 20
    assert all(x.get("request_id") for x in access)
    for needle in [*NAMES, "Bearer ", "eyJ", token[:20], creds["client_secret"]]:
        assert needle not in text, needle
