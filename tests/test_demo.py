"""The demo caseload loads through the service layer and reads back through the API."""

from __future__ import annotations

import base64

from service.db import make_engine
from service.demo import load_demo


async def test_demo_caseload(api):
    engine = make_engine(api.db.owner_url, api.db.settings(), pool=False)
    async with engine.begin() as conn:
        out = await load_demo(conn)
    await engine.dispose()
    assert out["created"]["clients"] == 3
    app = out["app"]
    basic = base64.b64encode(f"{app['client_id']}:{app['client_secret']}".encode()).decode()
    tok = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                              headers={"Authorization": f"Basic {basic}"})
    c = api.client(tok.json()["access_token"])
    clients = (await c.get("/v1/clients")).json()["data"]
    assert {x["display_name"] for x in clients} == {"Maya R.", "Daniel O.", "Amara N."}
    maya = next(x for x in clients if x["display_name"] == "Maya R.")
    full = (await c.get(f"/v1/clients/{maya['id']}?include=strengths,goals,milestones,experiments")).json()
    assert {s["domain"] for s in full["strengths"]} >= {"relational", "practical", "spiritual"}
    assert any(s["status"] == "hypothesis" for s in full["strengths"])
    assert all(g["strength_ids"] for g in full["goals"])
    assert all(m["completion_criteria"] for m in full["milestones"])
    assert any(x["status"] == "done" and x["debrief"] for x in full["experiments"])
    phq = (await c.get(f"/v1/outcome-markers?client_id={maya['id']}")).json()["data"]
    assert any(m["instrument"] == "phq9" for m in phq)
    # The first PHQ-9 of Maya endorses item 9: safety first, an alert is open.
    alerts = (await c.get(f"/v1/safety-alerts?client_id={maya['id']}")).json()["data"]
    assert alerts
    assert alerts[0]["status"] == "open"
