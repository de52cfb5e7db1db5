"""Client progress against hand-worked fixtures (CONTRACT.md section 4, issue 21).

Verdicts use the whole-score thresholds of NHS Talking Therapies: a change of 6 or more on the PHQ-9, 4 or more on
the GAD-7 is reliable; reliable recovery is a reliable improvement from at or above caseness (PHQ-9 10, GAD-7 8)
to below it. The Jacobson-Truax index is reported for information, by hand: PHQ-9 SD 5.5, r 0.84, so
S_diff = 5.5 * sqrt(2) * sqrt(0.16) = 3.11127; 18 -> 9 is RCI -9 / 3.11127 = -2.8927; 14 -> 8 is -1.9285, a
reliable change by the whole-score threshold although |RCI| < 1.96.
"""

from __future__ import annotations

from uuid import UUID

import pytest

from service.auth.principal import Principal
from service.db import tenant_transaction
from service.progress.service import client_progress
from tests.support.factories import create
from tests.support.progress import (
    S_DIFF_GAD7,
    S_DIFF_PHQ9,
    ago,
    goal_of,
    goal_with_marker,
    instrument_marker,
    marker_of,
    phq9_series,
    progress,
    record,
    series,
)

BOUNDARIES = [
    # instrument, baseline, latest, label: at the published thresholds and one point short of them
    ("phq9", 14, 8, "recovered"),  # -6: reliable, and from a case (>= 10) to below it
    ("phq9", 14, 9, "no_reliable_change"),  # -5: under the threshold of 6
    ("phq9", 8, 14, "reliably_deteriorated"),  # +6
    ("phq9", 8, 13, "no_reliable_change"),  # +5
    ("phq9", 16, 10, "reliably_improved"),  # -6, but 10 is still a case
    ("phq9", 10, 4, "recovered"),  # from exactly the cut-off
    ("phq9", 9, 3, "reliably_improved"),  # -6, but never a case: not a recovery
    ("gad7", 11, 7, "recovered"),  # -4, from a case (>= 8) to below it
    ("gad7", 10, 7, "no_reliable_change"),  # -3
    ("gad7", 12, 8, "reliably_improved"),  # -4, but 8 is still a case
    ("gad7", 7, 11, "reliably_deteriorated"),  # +4
    ("gad7", 8, 4, "recovered"),  # from exactly the cut-off
]


@pytest.mark.parametrize(("instrument", "baseline", "latest", "label"), BOUNDARIES)
async def test_labels_at_the_published_thresholds(c, instrument, baseline, latest, label):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    g, m = await series(c, cid, instrument, [(baseline, ago(30)), (latest, ago(2))])
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert (mk["baseline"], mk["latest"], mk["change"]) == (baseline, latest, latest - baseline)
    assert mk["label"] == label
    threshold = {"phq9": 6, "gad7": 4}[instrument]
    assert mk["reliable_change_threshold"] == threshold
    assert mk["reliable_change"] is (abs(latest - baseline) >= threshold)
    s_diff = {"phq9": S_DIFF_PHQ9, "gad7": S_DIFF_GAD7}[instrument]
    assert mk["rci"] == pytest.approx((latest - baseline) / s_diff, abs=1e-9)
    assert mk["min_change"] == threshold


async def test_phq9_18_to_9_by_hand(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    g, m = await phq9_series(c, cid, [(18, "2026-09-01T10:00:00Z"), (12, "2026-09-15T10:00:00Z"),
                                      (9, "2026-09-29T10:00:00Z")], start_date="2026-09-01")
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert (mk["baseline"], mk["latest"], mk["change"], mk["improvement"]) == (18, 9, -9, 9)
    assert mk["improved"] is True
    assert mk["s_diff"] == pytest.approx(S_DIFF_PHQ9, abs=1e-9)
    assert mk["rci"] == pytest.approx(-2.8927, abs=1e-4)
    assert (mk["reliable_change"], mk["caseness"], mk["clinically_significant"]) == (True, 10, True)
    assert (mk["label"], mk["baseline_band"], mk["latest_band"]) == ("recovered", "moderately_severe", "mild")
    # slope by hand: weeks 0, 2, 4 with 18, 12, 9 -> sum dx*dy / sum dx^2 = (-2*5 + 0 + 2*-4) / 8 = -2.25 per week
    assert mk["slope_per_week"] == pytest.approx(-2.25, abs=1e-6)
    assert mk["measurement_count"] == 3
    assert mk["last_measured"].startswith("2026-09-29T10:00:00")
    assert mk["stale"] is True  # nothing in the last 4 weeks


async def test_phq9_14_to_8_rci_is_information_only(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    g, m = await phq9_series(c, cid, [(14, ago(20)), (8, ago(1))])
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert mk["rci"] == pytest.approx(-1.9285, abs=1e-4)  # |RCI| < 1.96 ...
    assert mk["label"] == "recovered"  # ... but 6 points is a reliable change by the whole-score threshold
    assert (mk["baseline_band"], mk["latest_band"]) == ("moderate", "mild")


async def test_one_measurement_is_insufficient_data(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    g, m = await phq9_series(c, cid, [(14, ago(3))])
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert mk["label"] == "insufficient_data"
    assert mk["rci"] is None
    assert mk["reliable_change"] is None
    assert mk["clinically_significant"] is None
    assert (mk["baseline"], mk["latest"], mk["latest_band"]) == (14, 14, "moderate")
    no_readings_goal, empty = await goal_with_marker(c, cid, kind="instrument", instrument="gad7", name="GAD-7")
    mk = marker_of(await progress(c, cid), no_readings_goal["id"], empty["id"])
    assert (mk["label"], mk["rci"], mk["latest"], mk["measurement_count"]) == ("insufficient_data", None, None, 0)


async def test_readings_before_the_goal_start_do_not_make_a_course(c):  # noqa: F811
    """Baseline: the first reading on or after the start, else the last before it. With nothing since the start,
    the baseline is the latest reading: one reading from baseline, so no verdict."""
    cid = (await create(c, "clients"))["id"]
    g, m = await phq9_series(c, cid, [(18, "2026-09-01T10:00:00Z"), (9, "2026-09-29T10:00:00Z")],
                             start_date="2026-10-15")
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert (mk["baseline"], mk["baseline_at"][:10], mk["latest"]) == (9, "2026-09-29", 9)
    assert (mk["label"], mk["rci"]) == ("insufficient_data", None)


async def test_lower_is_better_custom_marker(c):  # noqa: F811
    """Minutes to calm down after a conflict; the goal starts 2026-10-01.

    2026-09-24 60 (before the start), 10-01 50, 10-08 40, 10-15 35, 10-22 25 (all 10:00Z).
    baseline = 50 (first on or after the start), latest 25, change -25, improvement +25.
    slope over weeks 0..3 with 50, 40, 35, 25: mean x 1.5, mean y 37.5;
    sum dx*dy = -1.5*12.5 - 0.5*2.5 + 0.5*-2.5 + 1.5*-12.5 = -40; sum dx^2 = 5; slope -8 min per week.
    """
    cid = (await create(c, "clients"))["id"]
    g, m = await goal_with_marker(c, cid, goal={"start_date": "2026-10-01"}, kind="recovery_time",
                                  name="Minutes to calm down", unit="min", min=0, max=240, direction="lower_is_better")
    await record(c, cid, m, [(v, f"2026-{d}T10:00:00Z") for v, d in
                             ((60, "09-24"), (50, "10-01"), (40, "10-08"), (35, "10-15"), (25, "10-22"))])
    mk = marker_of(await progress(c, cid), g["id"], m["id"])
    assert (mk["baseline"], mk["latest"], mk["change"], mk["improvement"], mk["improved"]) == (50, 25, -25, 25, True)
    assert mk["baseline_at"].startswith("2026-10-01T10:00:00")
    assert mk["slope_per_week"] == pytest.approx(-8.0, abs=1e-6)
    assert (mk["label"], mk["rci"], mk["reliable_change_threshold"], mk["baseline_band"]) == (None, None, None, None)
    assert mk["min_change"] == 24  # a tenth of its range, 0 to 240


async def test_higher_is_better_custom_marker_and_baseline_before_start(c):  # noqa: F811
    """Bus rides per week: 10-01 1, 10-03 2, 10-12 3, 10-19 5 (10:00Z).

    Goal B starts 10-05: baseline 3 (first on or after), latest 5, change +2, improvement +2, slope 2 per week.
    Goal C starts 11-01 and names the marker in its target: nothing on or after the start, so the baseline is the
    last before it (5), change 0, not improved, and no slope from a single point.
    """
    cid = (await create(c, "clients"))["id"]
    gb, m = await goal_with_marker(c, cid, goal={"start_date": "2026-10-05"}, kind="frequency",
                                   name="Bus rides per week", unit="/wk", min=0, max=50)
    strength = await create(c, "strengths", client_id=cid)
    gc = await create(c, "goals", client_id=cid, strength_id=strength["id"], start_date="2026-11-01",
                      target={"marker_id": m["id"], "comparator": ">=", "value": 3, "period": "P1W"})
    await record(c, cid, m, [(v, f"2026-{d}T10:00:00Z") for v, d in ((1, "10-01"), (2, "10-03"), (3, "10-12"),
                                                                      (5, "10-19"))])
    body = await progress(c, cid)
    b = marker_of(body, gb["id"], m["id"])
    assert (b["baseline"], b["latest"], b["change"], b["improvement"], b["improved"]) == (3, 5, 2, 2, True)
    assert b["slope_per_week"] == pytest.approx(2.0, abs=1e-6)
    cc = marker_of(body, gc["id"], m["id"])
    assert (cc["baseline"], cc["latest"], cc["change"], cc["improvement"], cc["improved"]) == (5, 5, 0, 0, False)
    assert cc["slope_per_week"] is None
    assert goal_of(body, gc["id"])["strengths"] == [{"id": strength["id"], "label": strength["label"],
                                                     "status": "hypothesis"}]
    assert body["client_measures"] == []  # the marker is named by goals


async def test_milestones_done_of_total_and_next_due(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    g, _ = await goal_with_marker(c, cid, name="Bus rides per week")
    await create(c, "milestones", client_id=cid, goal_id=g["id"], title="First", status="done",
                 completed_at="2026-10-01T10:00:00Z", due_date="2026-10-01")
    await create(c, "milestones", client_id=cid, goal_id=g["id"], title="Later", due_date="2026-12-20")
    nxt = await create(c, "milestones", client_id=cid, goal_id=g["id"], title="Next", due_date="2026-12-01")
    goal = (await progress(c, cid))["goals"][0]
    assert (goal["milestones_done"], goal["milestones_total"]) == (1, 3)
    assert (goal["next_milestone"]["id"], goal["next_milestone"]["due_date"]) == (nxt["id"], "2026-12-01")
    assert goal["strengths"][0]["label"] == "problem-solving"


async def test_unlinked_instrument_is_a_client_measure(c):  # noqa: F811
    """A PHQ-9 no goal names does not vanish: it is a client measure, baseline = its first measurement."""
    cid = (await create(c, "clients"))["id"]
    m = await instrument_marker(c, cid, "phq9")
    await record(c, cid, m, [(15, ago(40)), (12, ago(20)), (8, ago(3))])
    body = await progress(c, cid)
    assert body["goals"] == []
    [measure] = body["client_measures"]
    assert (measure["marker_id"], measure["baseline"], measure["latest"]) == (m["id"], 15, 8)
    assert (measure["baseline_band"], measure["latest_band"], measure["label"]) == ("moderately_severe", "mild",
                                                                                   "recovered")
    assert measure["stale"] is False
    assert body["recovery"] == {"status": "insufficient_data", "phq9": "recovered", "gad7": None}


RECOVERY = [
    # PHQ-9 course, GAD-7 course, status (CONTRACT.md section 4's order)
    ([14, 8], [8, 8], "reliably_improved"),  # PHQ-9 recovered but GAD-7 still a case: not recovered
    ([14, 8], [11, 7], "recovered"),
    ([14, 8], [7, 3], "recovered"),  # GAD-7 never a case, both below caseness now, PHQ-9 improved reliably
    ([14, 8], [3, 7], "reliably_deteriorated"),  # GAD-7 +4: deterioration comes before recovery
    ([6, 4], [5, 3], "not_a_case"),
    ([6, 12], [5, 3], "not_a_case"),  # neither was a case at baseline: not_a_case comes first
    ([14, 12], [10, 9], "no_reliable_change"),
    ([14], [10, 9], "insufficient_data"),  # both need two readings
]


@pytest.mark.parametrize(("phq9", "gad7", "status"), RECOVERY)
async def test_client_level_recovery(c, phq9, gad7, status):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    for instrument, course in (("phq9", phq9), ("gad7", gad7)):
        g, _ = await series(c, cid, instrument, [(v, ago(40 - 30 * i)) for i, v in enumerate(course)])
    body = await progress(c, cid)
    assert body["recovery"]["status"] == status
    if status == "reliably_improved":
        assert (body["recovery"]["phq9"], body["recovery"]["gad7"]) == ("recovered", "no_reliable_change")


async def test_recovery_reads_every_marker_of_an_instrument(c):  # noqa: F811
    """Two PHQ-9 markers (say, two apps): the client's PHQ-9 course is their readings together."""
    cid = (await create(c, "clients"))["id"]
    first, second = await instrument_marker(c, cid, "phq9"), await instrument_marker(c, cid, "phq9")
    await record(c, cid, first, [(14, ago(40))])
    await record(c, cid, second, [(8, ago(2))])
    body = await progress(c, cid)
    assert body["recovery"]["phq9"] == "recovered"
    assert {m["label"] for m in body["client_measures"]} == {"insufficient_data"}


async def test_safety_priority_comes_first_while_an_alert_is_unresolved(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    body = await progress(c, cid)
    assert list(body)[0] == "safety_priority"
    assert body["safety_priority"] is False
    _, m = await goal_with_marker(c, cid, kind="instrument", instrument="phq9", name="PHQ-9")
    r = await create(c, "measurements", client_id=cid, marker_id=m["id"], value=None,
                     items=[1, 1, 1, 1, 1, 1, 1, 1, 1], observed_at=ago(1))
    assert r["safety_alert"] is not None
    alert = r["safety_alert"]["id"]
    body = await progress(c, cid)
    assert (body["safety_priority"], body["open_safety_alerts"]) == (True, 1)
    assert [(a["id"], a["status"]) for a in body["safety_alerts"]] == [(alert, "open")]
    assert "item 9" in body["safety_alerts"][0]["reason"]
    await c.patch(f"/v1/safety-alerts/{alert}", json={"status": "acknowledged"})
    body = await progress(c, cid)
    assert body["safety_priority"] is True  # acknowledged is not resolved
    assert body["safety_alerts"][0]["status"] == "acknowledged"
    await c.patch(f"/v1/safety-alerts/{alert}", json={"status": "resolved", "resolution_note": "Safety plan done"})
    assert (await progress(c, cid))["safety_priority"] is False


async def test_service_layer_matches_rest(api, c):  # noqa: F811
    """The function GraphQL calls gives what REST serves."""
    cid = (await create(c, "clients"))["id"]
    await phq9_series(c, cid, [(18, "2026-09-01T10:00:00Z"), (9, "2026-09-29T10:00:00Z")])
    rest = await progress(c, cid)
    org_id = await api.db.fetchval("SELECT org_id FROM clients WHERE id = $1", UUID(cid))
    who = Principal(org_id=org_id, app_id="test", subject="test")
    async with tenant_transaction(api.app.state.ctx.engine, org_id) as conn:
        direct = await client_progress(conn, who, UUID(cid))
    assert direct.model_dump(mode="json") == rest
