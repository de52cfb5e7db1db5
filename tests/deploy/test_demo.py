"""The demo caseload loads through the service layer, reads back through the API, and tells its stories: dates
relative to the day it is loaded, one safety-priority client, milestones done on their own days."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

from service.db import make_engine
from service.demo import load_demo


async def demo_client(api, today: date | None = None):
    engine = make_engine(api.db.owner_url, api.db.settings(), pool=False)
    async with engine.begin() as conn:
        out = await load_demo(conn, today=today)
    await engine.dispose()
    app = out["app"]
    basic = base64.b64encode(f"{app['client_id']}:{app['client_secret']}".encode()).decode()
    tok = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                              headers={"Authorization": f"Basic {basic}"})
    return out, api.client(tok.json()["access_token"])


async def test_demo_caseload(api):
    out, c = await demo_client(api)
    assert out["created"]["clients"] == 3
    clients = {x["display_name"]: x for x in (await c.get("/v1/clients")).json()["data"]}
    assert set(clients) == {"Maya R.", "Daniel O.", "Amara N."}
    maya, daniel, amara = (clients[n]["id"] for n in ("Maya R.", "Daniel O.", "Amara N."))
    full = (await c.get(f"/v1/clients/{maya}?include=strengths,goals,milestones,experiments")).json()
    assert {s["domain"] for s in full["strengths"]} >= {"relational", "practical", "spiritual"}
    assert any(s["status"] == "hypothesis" for s in full["strengths"])
    assert all(g["strength_ids"] for g in full["goals"])
    assert all(m["completion_criteria"] for m in full["milestones"])
    assert any(x["status"] == "done" and x["debrief"] for x in full["experiments"])
    today = datetime.now(UTC).date()
    done = [m for m in full["milestones"] if m["status"] == "done"]
    completed = sorted(m["completed_at"][:10] for m in done)
    assert len(set(completed)) == len(done) >= 2  # each on its own day, none on the load date
    assert all(day < str(today - timedelta(days=7)) for day in completed)
    assert all(m["due_date"] > str(today) for m in full["milestones"] if m["status"] != "done")

    summary = (await c.get("/v1/progress/summary")).json()
    assert summary["safety_priority_clients"] == [amara]  # only the story that needs it
    rows = {row["client_id"]: row for row in summary["clients"]}
    assert (rows[amara]["safety_priority"], rows[amara]["phq9"]["label"]) == (True, "insufficient_data")
    assert (rows[maya]["recovery"], rows[daniel]["recovery"], rows[amara]["recovery"]) == (
        "recovered", "recovered", "insufficient_data")
    assert rows[maya]["off_track_goals"] == 1
    assert not any(row["stale"] for row in rows.values())
    goals = {g["description"]: g for g in (await c.get(f"/v1/clients/{maya}/progress")).json()["goals"]}
    mornings = next(g for d, g in goals.items() if d.startswith("Get up and out"))
    assert (mornings["target_met"], mornings["off_track"]) == (True, False)
    alerts = (await c.get(f"/v1/safety-alerts?client_id={amara}")).json()["data"]
    assert [a["status"] for a in alerts] == ["open"]
    note = (await c.get(f"/v1/clients/{maya}/summary")).json()
    assert "Planned experiment using structured routines" in note["text"]


async def test_demo_dates_follow_the_day_it_is_loaded(api):
    out, c = await demo_client(api, today=date(2030, 3, 1))
    latest = (await c.get("/v1/measurements", params={"limit": 500})).json()["data"]
    assert max(m["observed_at"][:10] for m in latest) <= "2030-03-01"
    assert min(m["observed_at"][:10] for m in latest) >= "2030-01-01"
