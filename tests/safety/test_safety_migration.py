"""Migration 0008 fills the trigger, severity and observed_at of alerts that existed before it from the values
that opened them (the measurement's history when it was corrected since), and goes down and up again."""

from __future__ import annotations

from service import migrate
from tests.support.factories import create
from tests.support.harness import APP_ROLE, Api
from tests.support.safety import ALL, gad7, instrument_marker, measurement, phq9

FIELDS = ("trigger", "severity", "observed_at", "reason", "status")


async def test_existing_alerts_are_filled_from_their_measurements(db):
    async with Api.start(db) as api:
        c = api.client(await api.token(await api.org(), ALL))
        phq = await instrument_marker(c)
        gad = await instrument_marker(c, "gad7", client_id=phq["client_id"])
        opened = [(await c.post("/v1/measurements", json=measurement(marker, items,
                                                                     observed_at=f"2026-11-1{i}T08:00:00Z"))).json()
                  for i, (marker, items) in enumerate([(phq, phq9(3, 8)), (phq, phq9(1, 24)), (gad, gad7(16)),
                                                       (phq, phq9(2, 7))])]
        # Corrected since: the current values meet no trigger; the alert keeps what opened it.
        fixed = await c.patch(f"/v1/measurements/{opened[3]['id']}", json={"items": phq9(0, 4)})
        assert fixed.json()["safety_alert"] is None
        by_hand = await create(c, "safety-alerts", client_id=phq["client_id"], reason="Clinician concern")
        await c.patch(f"/v1/safety-alerts/{opened[0]['safety_alert']['id']}",
                      json={"status": "resolved", "resolution_note": "Reviewed"})
    before = {r["id"]: dict(r) for r in await db.fetch("SELECT * FROM safety_alerts")}
    assert len(before) == 5

    migrate.downgrade(db.owner_url, "0007", app_role=APP_ROLE)
    assert await db.fetchval("SELECT count(*) FROM information_schema.columns WHERE table_name = 'safety_alerts' "
                             "AND column_name = 'trigger'") == 0
    migrate.upgrade(db.owner_url, app_role=APP_ROLE)

    after = {r["id"]: dict(r) for r in await db.fetch("SELECT * FROM safety_alerts")}
    for alert_id, old in before.items():
        new = after[alert_id]
        assert new["opened_at"] == new["created_at"]
        if str(alert_id) == by_hand["id"]:  # raised by hand: no trigger, high, dated when it was raised
            assert (new["trigger"], new["severity"], new["observed_at"]) == (None, "high", new["created_at"])
        else:
            assert {k: new[k] for k in FIELDS} == {k: old[k] for k in FIELDS}, alert_id
    kinds = sorted((a["severity"], a["trigger"]) for a in after.values() if a["trigger"])
    assert [k[0] for k in kinds] == ["high", "high", "urgent", "urgent"]
