"""target_met, stale and off_track (CONTRACT.md section 4): the courses of issue 21 give the clinically right
answer, and each condition is tested at its edge. "4 weeks earlier" is the last reading on or before the day
28 days ago (UTC), else the first reading after it."""

from __future__ import annotations

import pytest

from tests.support.factories import create
from tests.support.progress import (
    ago,
    goal_of,
    goal_with_marker,
    marker_of,
    phq9_series,
    progress,
    record,
)

SIX_WEEKS = [42, 35, 28, 14, 1]  # days ago
WALKS = {"kind": "frequency", "name": "Walks per week", "unit": "/wk", "min": 0, "max": 14}


@pytest.mark.parametrize("days", [SIX_WEEKS, [42, 33, 24, 13, 1]])
async def test_recovered_and_stable_is_not_off_track(c, days):  # noqa: F811
    """PHQ-9 18, 12, 4, 4, 4 over six weeks. With the reading exactly 28 days ago (4) as the reference, the
    latest (4) is no better, but both are below caseness; with the one 33 days ago (12), it is 8 points better."""
    cid = (await create(c, "clients"))["id"]
    g, m = await phq9_series(c, cid, [(v, ago(d)) for v, d in zip([18, 12, 4, 4, 4], days, strict=True)],
                             lifecycle="active")
    body = await progress(c, cid)
    goal = goal_of(body, g["id"])
    assert (goal["off_track"], goal["stale"], goal["target_met"]) == (False, False, None)
    assert marker_of(body, g["id"], m["id"])["recent_improvement"] == (0 if days == SIX_WEEKS else 8)
    assert marker_of(body, g["id"], m["id"])["label"] == "recovered"


async def test_stuck_course_with_one_point_noise_is_off_track(c):  # noqa: F811
    """PHQ-9 18, 17, 18, 17, 16: the reading 28 days ago is 18, the latest 16, 2 points better: under the
    reliable-change threshold of 6, and still a case."""
    cid = (await create(c, "clients"))["id"]
    g, m = await phq9_series(c, cid, [(v, ago(d)) for v, d in zip([18, 17, 18, 17, 16], SIX_WEEKS, strict=True)],
                             lifecycle="active")
    body = await progress(c, cid)
    assert goal_of(body, g["id"])["off_track"] is True
    assert marker_of(body, g["id"], m["id"])["recent_improvement"] == 2
    assert marker_of(body, g["id"], m["id"])["label"] == "no_reliable_change"


async def test_six_points_in_four_weeks_is_on_track(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    on, _ = await phq9_series(c, cid, [(18, ago(28)), (12, ago(1))], lifecycle="active")  # exactly 6
    off, _ = await phq9_series(c, cid, [(18, ago(28)), (13, ago(1))], lifecycle="active")  # 5
    body = await progress(c, cid)
    assert (goal_of(body, on["id"])["off_track"], goal_of(body, off["id"])["off_track"]) == (False, True)


async def test_met_target_is_not_off_track_and_an_unmet_control_is(c):  # noqa: F811
    """Walks per week 4, 4, 4 (15, 8 and 1 days ago). Target at least 3 per week held for 2 weeks: the run of
    readings that meet it spans 14 days, and each reading counts a week, so 21 days >= 14: met. The control's
    target (at least 5) is not met, and with no improvement it is off track."""
    cid = (await create(c, "clients"))["id"]
    goals = {}
    for name, value in (("met", 3), ("control", 5)):
        g, m = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, **WALKS)
        r = await c.patch(f"/v1/goals/{g['id']}", json={"target": {
            "marker_id": m["id"], "comparator": ">=", "value": value, "period": "P1W", "duration": "P2W"}})
        assert r.status_code == 200, r.text
        await record(c, cid, m, [(4, ago(d)) for d in (15, 8, 1)])
        goals[name] = g["id"]
    body = await progress(c, cid)
    met, control = goal_of(body, goals["met"]), goal_of(body, goals["control"])
    assert (met["target_met"], met["off_track"]) == (True, False)
    assert (control["target_met"], control["off_track"]) == (False, True)


@pytest.mark.parametrize(("days", "met"), [([21, 14, 7, 0], True), ([20.9, 14, 7, 0], False)])
async def test_target_must_hold_for_its_duration(c, days, met):  # noqa: F811
    """At least 3 per week held for 4 weeks: four weekly readings, from 21 days ago to now, each counting the
    week before it, cover 28 days; from 20.9 days ago they cover a little less."""
    cid = (await create(c, "clients"))["id"]
    g, m = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, **WALKS)
    await c.patch(f"/v1/goals/{g['id']}", json={"target": {
        "marker_id": m["id"], "comparator": ">=", "value": 3, "period": "P1W", "duration": "P4W"}})
    await record(c, cid, m, [(1, ago(35))] + [(3, ago(d)) for d in days])
    assert goal_of(await progress(c, cid), g["id"])["target_met"] is met


async def test_a_miss_restarts_the_run_and_the_latest_reading_decides(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    g, m = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, **WALKS)
    # the target names no marker: the goal's only marker is read
    await c.patch(f"/v1/goals/{g['id']}", json={"target": {"comparator": ">=", "value": 3, "duration": "P2W"}})
    await record(c, cid, m, [(5, ago(30)), (5, ago(20)), (2, ago(10)), (4, ago(5)), (4, ago(1))])
    assert goal_of(await progress(c, cid), g["id"])["target_met"] is False  # the run began 5 days ago
    await record(c, cid, m, [(2, ago(0.01))])
    assert goal_of(await progress(c, cid), g["id"])["target_met"] is False
    g2, m2 = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, **WALKS)
    await c.patch(f"/v1/goals/{g2['id']}", json={"target": {"comparator": "<", "value": 3}})
    await record(c, cid, m2, [(5, ago(3)), (2, ago(1))])
    no_target, _ = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, **WALKS)
    body = await progress(c, cid)
    assert goal_of(body, g2["id"])["target_met"] is True  # no duration: the latest reading meets it
    assert goal_of(body, no_target["id"])["target_met"] is None


async def test_stale_goal_is_stale_not_off_track(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    g, m = await phq9_series(c, cid, [(18, ago(60)), (18, ago(29))], lifecycle="active")
    body = await progress(c, cid)
    assert (goal_of(body, g["id"])["stale"], goal_of(body, g["id"])["off_track"]) == (True, False)
    assert marker_of(body, g["id"], m["id"])["stale"] is True
    await record(c, cid, m, [(18, ago(27))])
    empty, _ = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, **WALKS)
    body = await progress(c, cid)
    assert (goal_of(body, g["id"])["stale"], goal_of(body, g["id"])["off_track"]) == (False, True)
    assert (goal_of(body, empty["id"])["stale"], goal_of(body, empty["id"])["off_track"]) == (True, False)


async def test_no_reading_to_compare_or_not_active_is_not_off_track(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    single, _ = await phq9_series(c, cid, [(18, ago(2))], lifecycle="active")
    on_hold, _ = await phq9_series(c, cid, [(18, ago(40)), (18, ago(2))], lifecycle="on_hold")
    active, _ = await phq9_series(c, cid, [(18, ago(40)), (18, ago(2))], lifecycle="active")
    body = await progress(c, cid)
    assert goal_of(body, single["id"])["off_track"] is False
    assert goal_of(body, on_hold["id"])["off_track"] is False
    assert goal_of(body, active["id"])["off_track"] is True
    # the reference is the first reading after the day 4 weeks ago when none is on or before it
    late, m = await phq9_series(c, cid, [(18, ago(20)), (11, ago(2))], lifecycle="active")
    assert marker_of(await progress(c, cid), late["id"], m["id"])["recent_improvement"] == 7


@pytest.mark.parametrize(("min_change", "off_track"), [(None, True), (3, True), (2, False)])
async def test_minimal_meaningful_change_of_custom_markers(c, min_change, off_track):  # noqa: F811
    """Walks per week, range 0 to 40: the default minimal change is a tenth, 4; 3 -> 5 is 2 better."""
    cid = (await create(c, "clients"))["id"]
    marker = {**WALKS, "min_change": min_change} if min_change else WALKS
    g, m = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, **{**marker, "max": 40})
    await record(c, cid, m, [(3, ago(30)), (5, ago(1))])
    body = await progress(c, cid)
    assert marker_of(body, g["id"], m["id"])["min_change"] == (min_change or 4)
    assert goal_of(body, g["id"])["off_track"] is off_track


async def test_min_change_on_markers(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    phq9 = await create(c, "outcome-markers", client_id=cid, kind="instrument", instrument="phq9", name="PHQ-9")
    assert phq9["min_change"] == 6
    gad7 = await create(c, "outcome-markers", client_id=cid, kind="instrument", instrument="gad7", name="GAD-7",
                        min_change=4)
    assert gad7["min_change"] == 4
    r = await c.post("/v1/outcome-markers", json={"client_id": cid, "kind": "instrument", "instrument": "phq9",
                                                  "name": "PHQ-9", "min_change": 5})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "min_change"
    assert (await c.patch(f"/v1/outcome-markers/{phq9['id']}", json={"min_change": 3})).status_code == 422
    for bad in (0, -1, "2"):
        r = await c.post("/v1/outcome-markers", json={"client_id": cid, "kind": "frequency", "name": "Walks",
                                                      "min_change": bad})
        assert r.status_code == 422, bad
        assert r.json()["errors"][0]["field"].endswith("min_change")
    walks = await create(c, "outcome-markers", client_id=cid, **WALKS, min_change=2)
    assert walks["min_change"] == 2
    r = await c.patch(f"/v1/outcome-markers/{walks['id']}", json={"min_change": None})
    assert (r.status_code, r.json()["min_change"]) == (200, None)


async def test_a_stored_duration_beyond_the_schema_never_fails_the_statement(api, c):  # noqa: F811
    """Older validation accepted any digits (P99999999999999999Y is no PostgreSQL interval): such a target reads
    as the strictest one (never held long enough), and progress still answers."""
    from uuid import UUID

    cid = (await create(c, "clients"))["id"]
    g, m = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, **WALKS)
    await c.patch(f"/v1/goals/{g['id']}", json={"target": {
        "marker_id": m["id"], "comparator": ">=", "value": 3, "period": "P1W", "duration": "P1W"}})
    await record(c, cid, m, [(4, ago(20)), (4, ago(1))])
    assert goal_of(await progress(c, cid), g["id"])["target_met"] is True
    await api.db.fetch("""UPDATE goals SET target = jsonb_set(jsonb_set(target, '{duration}', '"P99999999999999999Y"'),
                                                              '{period}', '"P99999999999999999W"') WHERE id = $1""",
                       UUID(g["id"]))
    assert goal_of(await progress(c, cid), g["id"])["target_met"] is False
    assert (await c.get("/v1/progress/summary")).status_code == 200
    r = await c.patch(f"/v1/goals/{g['id']}", json={"target": {"comparator": ">=", "value": 3,
                                                                "duration": "P99999W"}})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "target.duration")
