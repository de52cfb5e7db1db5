"""Client progress against hand-worked fixtures (CONTRACT.md section 4, issue 11).

Reliable change by hand (Jacobson-Truax, registry values): PHQ-9 SD 5.5, r 0.84, so
S_diff = 5.5 * sqrt(2) * sqrt(0.16) = 3.11127; 18 -> 9 is RCI -9 / 3.11127 = -2.8927 (reliable, and from 18 >= 10
to 9 < 10: recovered); 12 -> 10 is RCI -2 / 3.11127 = -0.6428 (no reliable change, 10 is still a case).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from service.auth.principal import Principal
from service.db import tenant_transaction
from service.progress.service import client_progress
from tests.factories import create

ALL = "system/*.cruds"
S_DIFF_PHQ9 = 5.5 * math.sqrt(2) * math.sqrt(1 - 0.84)

# PHQ-9 item responses (item 9 = 0, so no safety alert) with hand-checked totals
PHQ9 = {
    18: [3, 3, 3, 3, 2, 2, 1, 1, 0], 9: [1, 1, 1, 1, 1, 1, 1, 2, 0], 12: [2, 2, 2, 2, 1, 1, 1, 1, 0],
    10: [2, 2, 1, 1, 1, 1, 1, 1, 0], 19: [3, 3, 3, 3, 3, 2, 1, 1, 0], 16: [2, 2, 2, 2, 2, 2, 2, 2, 0],
}
GAD7 = {4: [1, 1, 1, 1, 0, 0, 0], 12: [2, 2, 2, 2, 2, 1, 1]}


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


@pytest.fixture
async def c(api):
    org = await api.org()
    return api.client(await api.token(org, ALL))


async def goal_with_marker(c, cid: str, *, goal: dict | None = None, **marker) -> tuple[dict, dict]:
    strength = await create(c, "strengths", client_id=cid, label="problem-solving", status="confirmed",
                            evidence=["Sorted out the rent arrears in three small steps"])
    g = await create(c, "goals", client_id=cid, strength_id=strength["id"], **(goal or {}))
    m = await create(c, "outcome-markers", client_id=cid, goal_id=g["id"], **marker)
    return g, m


async def phq9_series(c, cid: str, totals_at: list[tuple[int, str]], **goal) -> tuple[dict, dict]:
    g, m = await goal_with_marker(c, cid, goal=goal or None, kind="instrument", instrument="phq9", name="PHQ-9")
    for total, at in totals_at:
        await create(c, "measurements", client_id=cid, marker_id=m["id"], value=None, items=PHQ9[total],
                     observed_at=at)
    return g, m


async def progress(c, cid: str, **params) -> dict:
    r = await c.get(f"/v1/clients/{cid}/progress", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def marker_of(body: dict, goal_id: str, marker_id: str) -> dict:
    goal = next(g for g in body["goals"] if g["goal_id"] == goal_id)
    return next(m for m in goal["markers"] if m["marker_id"] == marker_id)


async def test_phq9_18_to_9_is_reliably_improved_and_recovered(c):
    cid = (await create(c, "clients"))["id"]
    g, m = await phq9_series(c, cid, [(18, "2026-09-01T10:00:00Z"), (12, "2026-09-15T10:00:00Z"),
                                      (9, "2026-09-29T10:00:00Z")], start_date="2026-09-01")
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert (mk["baseline"], mk["latest"], mk["change"], mk["improvement"]) == (18, 9, -9, 9)
    assert mk["improved"] is True
    assert mk["s_diff"] == pytest.approx(S_DIFF_PHQ9, abs=1e-9)
    assert mk["rci"] == pytest.approx(-9 / S_DIFF_PHQ9, abs=1e-9)
    assert mk["rci"] == pytest.approx(-2.8927, abs=1e-4)
    assert mk["reliable_change"] is True
    assert mk["caseness"] == 10
    assert mk["clinically_significant"] is True
    assert mk["label"] == "recovered"
    # slope by hand: weeks 0, 2, 4 with 18, 12, 9 -> sum dx*dy / sum dx^2 = (-2*5 + 0 + 2*-4) / 8 = -2.25 per week
    assert mk["slope_per_week"] == pytest.approx(-2.25, abs=1e-6)
    assert mk["measurement_count"] == 3
    assert mk["last_measured"].startswith("2026-09-29T10:00:00")


async def test_phq9_12_to_10_is_no_reliable_change(c):
    cid = (await create(c, "clients"))["id"]
    g, m = await phq9_series(c, cid, [(12, "2026-09-01T10:00:00Z"), (10, "2026-09-22T10:00:00Z")])
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert (mk["baseline"], mk["latest"], mk["change"], mk["improvement"], mk["improved"]) == (12, 10, -2, 2, True)
    assert mk["rci"] == pytest.approx(-0.6428, abs=1e-4)
    assert mk["reliable_change"] is False
    assert mk["clinically_significant"] is False  # 10 is still at the cut-off
    assert mk["label"] == "no_reliable_change"


async def test_gad7_reliable_deterioration(c):
    # GAD-7: S_diff = 3.41 * sqrt(2) * sqrt(0.17) = 1.98838; 4 -> 12 is RCI 8 / 1.98838 = 4.0234
    cid = (await create(c, "clients"))["id"]
    g, m = await goal_with_marker(c, cid, kind="instrument", instrument="gad7", name="GAD-7")
    for total, at in ((4, "2026-09-01T10:00:00Z"), (12, "2026-09-22T10:00:00Z")):
        await create(c, "measurements", client_id=cid, marker_id=m["id"], value=None, items=GAD7[total],
                     observed_at=at)
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert mk["rci"] == pytest.approx(8 / (3.41 * math.sqrt(2) * math.sqrt(0.17)), abs=1e-9)
    assert mk["improvement"] == -8
    assert mk["label"] == "reliably_deteriorated"


async def test_lower_is_better_custom_marker(c):
    """Minutes to calm down after a conflict; the goal starts 2026-10-01.

    2026-09-24 60 (before the start), 10-01 50, 10-08 40, 10-15 35, 10-22 25 (all 10:00Z).
    baseline = 50 (first on or after the start), latest 25, change -25, improvement +25.
    slope over weeks 0..3 with 50, 40, 35, 25: mean x 1.5, mean y 37.5;
    sum dx*dy = -1.5*12.5 - 0.5*2.5 + 0.5*-2.5 + 1.5*-12.5 = -40; sum dx^2 = 5; slope -8 min per week.
    """
    cid = (await create(c, "clients"))["id"]
    g, m = await goal_with_marker(c, cid, goal={"start_date": "2026-10-01"}, kind="recovery_time",
                                  name="Minutes to calm down", unit="min", min=0, max=240, direction="lower_is_better")
    for value, day in ((60, "09-24"), (50, "10-01"), (40, "10-08"), (35, "10-15"), (25, "10-22")):
        await create(c, "measurements", client_id=cid, marker_id=m["id"], value=value,
                     observed_at=f"2026-{day}T10:00:00Z")
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert (mk["baseline"], mk["latest"], mk["change"], mk["improvement"], mk["improved"]) == (50, 25, -25, 25, True)
    assert mk["baseline_at"].startswith("2026-10-01T10:00:00")
    assert mk["slope_per_week"] == pytest.approx(-8.0, abs=1e-6)
    assert mk["label"] is None
    assert mk["rci"] is None


async def test_higher_is_better_custom_marker_and_baseline_before_start(c):
    """Bus rides per week: 10-01 1, 10-03 2, 10-12 3, 10-19 5 (10:00Z).

    Goal B starts 10-05: baseline 3 (first on or after), latest 5, change +2, improvement +2, slope 2 per week.
    Goal C starts 11-01 and links the marker through its target: nothing on or after the start, so the
    baseline is the last before it (5), change 0, not improved, and no slope from a single point.
    """
    cid = (await create(c, "clients"))["id"]
    gb, m = await goal_with_marker(c, cid, goal={"start_date": "2026-10-05"}, kind="frequency",
                                   name="Bus rides per week", unit="/wk", min=0, max=50)
    strength = await create(c, "strengths", client_id=cid)
    gc = await create(c, "goals", client_id=cid, strength_id=strength["id"], start_date="2026-11-01",
                      target={"marker_id": m["id"], "comparator": ">=", "value": 3, "period": "P1W"})
    for value, day in ((1, "10-01"), (2, "10-03"), (3, "10-12"), (5, "10-19")):
        await create(c, "measurements", client_id=cid, marker_id=m["id"], value=value,
                     observed_at=f"2026-{day}T10:00:00Z")
    body = await progress(c, cid)
    b = marker_of(body, gb["id"], m["id"])
    assert (b["baseline"], b["latest"], b["change"], b["improvement"], b["improved"]) == (3, 5, 2, 2, True)
    assert b["slope_per_week"] == pytest.approx(2.0, abs=1e-6)
    cc = marker_of(body, gc["id"], m["id"])
    assert (cc["baseline"], cc["latest"], cc["change"], cc["improvement"], cc["improved"]) == (5, 5, 0, 0, False)
    assert cc["slope_per_week"] is None
    goal_c = next(g for g in body["goals"] if g["goal_id"] == gc["id"])
    assert goal_c["strengths"] == [{"id": strength["id"], "label": strength["label"], "status": "hypothesis"}]


async def test_milestones_done_of_total_and_next_due(c):
    cid = (await create(c, "clients"))["id"]
    g, _ = await goal_with_marker(c, cid, name="Bus rides per week")
    await create(c, "milestones", client_id=cid, goal_id=g["id"], title="First", status="done",
                 completed_at="2026-10-01T10:00:00Z", due_date="2026-10-01")
    await create(c, "milestones", client_id=cid, goal_id=g["id"], title="Later", due_date="2026-12-20")
    nxt = await create(c, "milestones", client_id=cid, goal_id=g["id"], title="Next", due_date="2026-12-01")
    goal = (await progress(c, cid))["goals"][0]
    assert (goal["milestones_done"], goal["milestones_total"]) == (1, 3)
    assert goal["next_milestone"]["id"] == nxt["id"]
    assert goal["next_milestone"]["due_date"] == "2026-12-01"
    assert goal["strengths"][0]["label"] == "problem-solving"


async def test_off_track_is_no_improvement_over_the_window(c):
    cid = (await create(c, "clients"))["id"]
    stuck, m1 = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, name="Walks per week", unit="/wk")
    moving, m2 = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, name="Calls per week", unit="/wk")
    for value, days in ((5, 42), (4, 21), (4, 7)):
        await create(c, "measurements", client_id=cid, marker_id=m1["id"], value=value, observed_at=ago(days))
    for value, days in ((2, 42), (4, 7)):
        await create(c, "measurements", client_id=cid, marker_id=m2["id"], value=value, observed_at=ago(days))
    goals = {g["goal_id"]: g for g in (await progress(c, cid))["goals"]}
    assert goals[stuck["id"]]["off_track"] is True
    assert marker_of({"goals": list(goals.values())}, stuck["id"], m1["id"])["recent_improvement"] == -1
    assert goals[moving["id"]]["off_track"] is False
    # configurable: over 60 days there are not yet 60 days of data, so nothing is called off track
    body = await progress(c, cid, off_track_days=60)
    assert body["off_track_days"] == 60
    assert all(g["off_track"] is False for g in body["goals"])
    # a window of 3 days: the stuck goal changed nothing since its 7-days-ago value is the reference
    goals = {g["goal_id"]: g for g in (await progress(c, cid, off_track_days=3))["goals"]}
    assert goals[stuck["id"]]["off_track"] is True
    assert goals[moving["id"]]["off_track"] is True


async def test_safety_priority_comes_first(c):
    cid = (await create(c, "clients"))["id"]
    body = await progress(c, cid)
    assert list(body)[0] == "safety_priority"
    assert body["safety_priority"] is False
    _, m = await goal_with_marker(c, cid, kind="instrument", instrument="phq9", name="PHQ-9")
    r = await create(c, "measurements", client_id=cid, marker_id=m["id"], value=None,
                     items=[1, 1, 1, 1, 1, 1, 1, 1, 1], observed_at=ago(1))
    assert r["safety_alert"] is not None
    body = await progress(c, cid)
    assert list(body)[0] == "safety_priority"
    assert body["safety_priority"] is True
    assert body["open_safety_alerts"] == 1
    assert [a["id"] for a in body["safety_alerts"]] == [r["safety_alert"]["id"]]
    assert "item 9" in body["safety_alerts"][0]["reason"]
    await c.patch(f"/v1/safety-alerts/{r['safety_alert']['id']}",
                  json={"status": "resolved", "resolution_note": "Safety plan done"})
    assert (await progress(c, cid))["safety_priority"] is False


async def test_service_layer_matches_rest(api, c):
    """The function GraphQL will call gives what REST serves."""
    cid = (await create(c, "clients"))["id"]
    await phq9_series(c, cid, [(18, "2026-09-01T10:00:00Z"), (9, "2026-09-29T10:00:00Z")])
    rest = await progress(c, cid)
    org_id = await api.db.fetchval("SELECT org_id FROM clients WHERE id = $1", UUID(cid))
    who = Principal(org_id=org_id, app_id="test", subject="test")
    async with tenant_transaction(api.app.state.ctx.engine, org_id) as conn:
        direct = await client_progress(conn, who, UUID(cid))
    assert direct.model_dump(mode="json") == rest
