"""The clinical summary: safety first, symptoms beside strengths, goals, progress strictly inside the window, a
plan, and quality hints; the same text for the same data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID

from service.settings import PROJECT_ROOT
from tests.support.factories import create
from tests.support.progress import (
    ago,
    goal_with_marker,
    instrument_marker,
    phq9_series,
    record,
)

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"


def days_ago(n: int) -> str:
    return (datetime.now(UTC) - timedelta(days=n)).date().isoformat()


async def summary(client, cid: str, **params) -> dict:
    r = await client.get(f"/v1/clients/{cid}/summary", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def section(body: dict, title: str) -> list[str]:
    return next(s["lines"] for s in body["sections"] if s["title"].startswith(title))


def without_dates(lines: list[str]) -> str:
    """The lines joined, each ISO date replaced, so that a test looking for a score of 12 or 18 is not fooled by
    a date in December or on the 18th."""
    return re.sub(r"\d{4}-\d{2}-\d{2}", "<date>", "\n".join(lines))


async def test_summary_is_strengths_based_deterministic_and_hints(api, c):  # noqa: F811
    cid = (await create(c, "clients", preferred_future="Back at work and riding the bus"))["id"]
    solving = await create(c, "strengths", client_id=cid, label="problem-solving", status="confirmed",
                           domain="practical", kind="skill",
                           description="breaks a problem into small steps and tries the first one",
                           context="at work", evidence=["Fixed the rota clash with a coworker"])
    motivated = await create(c, "strengths", client_id=cid, label="motivated", description=None, domain="personal",
                             kind="character")
    caring = await create(c, "strengths", client_id=cid, label="caring", description="Is a very kind and caring person",
                          domain="relational", kind="character", status="confirmed", evidence=["Visits her aunt"])
    await api.db.fetch("UPDATE strengths SET evidence = '{}' WHERE id = $1", UUID(caring["id"]))  # legacy data
    goal = await create(c, "goals", client_id=cid, strength_id=solving["id"], lifecycle="active",
                        description="Take the bus to work three days a week", start_date=days_ago(40))
    marker = await instrument_marker(c, cid, "phq9", goal_id=goal["id"])
    await record(c, cid, marker, [(18, ago(40)), (9, ago(3))])
    vague = await create(c, "milestones", client_id=cid, goal_id=goal["id"], title="Feel better",
                         completion_criteria="Feels better about the bus")
    await create(c, "milestones", client_id=cid, goal_id=goal["id"], title="Two stops",
                 completion_criteria="Rode two stops with a friend on two separate days", status="done",
                 completed_at=ago(3))
    for situation in ("Asked a coworker to swap shifts", "Planned the route with the bus app"):
        await create(c, "strength-uses", client_id=cid, strength_id=solving["id"], situation=situation,
                     result="It worked", occurred_at=ago(4))
    await create(c, "experiments", client_id=cid, strength_id=solving["id"], goal_id=goal["id"],
                 plan="Plan the Tuesday bus ride step by step", status="done", result="Rode three stops",
                 confidence_before=3, confidence_after=7, debrief="Breaking it down makes it doable")
    protective = await create(c, "protective-factors", client_id=cid, status="at_risk",
                              description="Sister calls every Sunday")

    since = days_ago(10)
    body = await summary(c, cid, since=since)
    assert body == await summary(c, cid, since=since)
    text = body["text"]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "summary.txt").write_text(text)
    assert [s["title"] for s in body["sections"]] == ["Assessment", "Goals", f"Progress since {since}", "Plan"]
    assessment = section(body, "Assessment")
    assert assessment[0] == ("Latest symptom scores: PHQ-9 9 (mild), alongside identified strengths in caring, "
                             "problem-solving.")
    assert any(line.startswith("PHQ-9 9 (mild) on ") and "first 18 (moderately severe)" in line
               and "recovered" in line for line in assessment)
    assert "Identified strength: problem-solving, practical skill: client breaks a problem into small steps" \
        in "\n".join(assessment)
    assert "Back at work and riding the bus" in text
    progress = section(body, "Progress")
    assert f"Client applied problem-solving (identified strength) in 2 situations since {since}" in progress[0]
    assert any("confidence 3 to 7 of 10" in line and "Breaking it down makes it doable" in line for line in progress)
    assert any(line.startswith("Milestone reached: \u201cTwo stops\u201d") for line in progress)
    goals = "\n".join(section(body, "Goals"))
    assert "Milestones: 1 of 2 done" in goals
    hints = {(h["code"], h["record_id"]) for h in body["quality_hints"]}
    assert ("strength_not_behavioural", motivated["id"]) in hints
    assert ("hypothesis_without_evidence", motivated["id"]) in hints
    assert ("strength_not_behavioural", caring["id"]) in hints  # adjectives are not behaviour
    assert ("confirmed_without_evidence", caring["id"]) in hints
    assert ("goal_not_observable", goal["id"]) in hints  # no target
    assert ("milestone_not_observable", vague["id"]) in hints
    assert ("protective_factor_at_risk", protective["id"]) in hints
    assert not {h for h in hints if h[1] == solving["id"]}  # the behavioural, confirmed strength is fine
    assert "no_symptom_measure" not in {h[0] for h in hints}


async def test_safety_comes_first(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    alert = await create(c, "safety-alerts", client_id=cid, reason="Clinician concern")
    body = await summary(c, cid)
    assert body["sections"][0]["title"] == "Safety"
    assert "Clinician concern" in body["sections"][0]["lines"][1]
    assert body["safety_priority"] is True
    assert body["text"].split("\n\n")[1].startswith("Safety")
    await c.patch(f"/v1/safety-alerts/{alert['id']}", json={"status": "acknowledged"})
    body = await summary(c, cid)
    assert body["sections"][0]["title"] == "Safety"
    assert "acknowledged on " in body["sections"][0]["lines"][1]
    assert "not yet resolved" in body["sections"][0]["lines"][1]


async def test_an_unlinked_phq9_appears_with_its_band(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    await record(c, cid, await instrument_marker(c, cid, "phq9"), [(14, ago(2))])
    body = await summary(c, cid)
    assert section(body, "Assessment")[0] == "Latest symptom scores: PHQ-9 14 (moderate)."
    assert any(line.startswith("PHQ-9 14 (moderate) on ") for line in section(body, "Progress"))
    assert "No strength uses, experiments, milestones or measurements" not in body["text"]
    assert "no_symptom_measure" not in {h["code"] for h in body["quality_hints"]}
    empty = (await create(c, "clients"))["id"]
    body = await summary(c, empty)
    assert section(body, "Assessment")[0] == "No symptom measure (PHQ-9, GAD-7) recorded."
    assert "no_symptom_measure" in {h["code"] for h in body["quality_hints"]}


async def test_plan_has_the_next_milestone_planned_experiments_and_barriers(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    goal, _ = await goal_with_marker(c, cid, goal={"description": "Walk to the shop before 9am on three days a week",
                                                   "lifecycle": "active", "barriers": ["Late-night phone use"]},
                                     name="Mornings out by 9am", unit="/wk", min=0, max=7)
    await create(c, "milestones", client_id=cid, goal_id=goal["id"], title="Alarm across the room",
                 completion_criteria="Alarm placed across the room on 5 of 7 nights", due_date=days_ago(-7))
    strength = (await c.get(f"/v1/goals/{goal['id']}")).json()["strength_ids"][0]
    await create(c, "experiments", client_id=cid, strength_id=strength, goal_id=goal["id"],
                 plan="Bake something small on Tuesday before 9", due_date=days_ago(-5))
    await create(c, "experiments", client_id=cid, strength_id=strength, plan="Not this one", status="not_done")
    plan = section(await summary(c, cid), "Plan")
    assert any(line.startswith("Next milestone for \u201cWalk to the shop") and "Alarm across the room" in line
               and f"due {days_ago(-7)}" in line for line in plan), plan
    assert (f"Planned experiment using problem-solving (identified strength): \u201cBake something small on "
            f"Tuesday before 9\u201d, due {days_ago(-5)}.") in plan
    assert any(line.startswith("Barriers to ") and "Late-night phone use" in line for line in plan)
    assert not any("Not this one" in line for line in plan)


async def test_nothing_from_outside_the_window_is_reported_as_progress(api, c):  # noqa: F811
    """Before the window: a PHQ-9 of 18 and of 12, a strength use, a milestone, an experiment marked done (its
    history moved back, as it would be had it been done then), and a marker measured only before it. Inside: a
    PHQ-9 of 9. The progress section reports the 9 alone, and none of the rest."""
    cid = (await create(c, "clients"))["id"]
    goal, marker = await phq9_series(c, cid, [(18, ago(40)), (12, ago(20)), (9, ago(5))], lifecycle="active")
    walks = await create(c, "outcome-markers", client_id=cid, name="Walks per week", unit="/wk", min=0, max=14)
    await record(c, cid, walks, [(2, ago(30)), (5, ago(15))])
    strength = (await c.get(f"/v1/goals/{goal['id']}")).json()["strength_ids"][0]
    await create(c, "strength-uses", client_id=cid, strength_id=strength, situation="Old situation",
                 occurred_at=ago(15))
    await create(c, "milestones", client_id=cid, goal_id=goal["id"], title="Old milestone", status="done",
                 completed_at=ago(15))
    old = await create(c, "experiments", client_id=cid, strength_id=strength, plan="Old experiment", status="done",
                       result="Went well")
    await api.db.fetch("UPDATE history SET changed_at = now() - interval '15 days' WHERE record_id = $1",
                       UUID(old["id"]))
    body = await summary(c, cid, since=days_ago(10))
    progress = section(body, "Progress")
    assert len(progress) == 1, progress
    assert progress[0].startswith("PHQ-9 9 (mild) on ")
    assert "(one reading in this period)" in progress[0]
    assert not any(word in without_dates(progress) for word in ("18", "12", "Walks", "Old")), progress
    # widen the window: the same records are progress now
    progress = section(await summary(c, cid, since=days_ago(25)), "Progress")
    joined = "\n".join(progress)
    for expected in ("Old situation", "Old milestone", "Old experiment", "Walks per week 5 per week on",
                     "PHQ-9 fell from 12 (moderate)"):
        assert expected in joined, (expected, progress)
    assert "18" not in without_dates(progress)  # the reading 40 days ago is still outside


async def test_targets_and_units_in_words(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    goal, marker = await goal_with_marker(c, cid, goal={"description": "Walk to the shop before 9am"},
                                          name="Mornings out by 9am", unit="/wk", min=0, max=7)
    r = await c.patch(f"/v1/goals/{goal['id']}", json={"target": {
        "marker_id": marker["id"], "comparator": ">=", "value": 3, "period": "P1W", "duration": "P4W"}})
    assert r.status_code == 200, r.text
    await record(c, cid, marker, [(1, ago(20)), (4, ago(3))])
    body = await summary(c, cid)
    assert "Target: Mornings out by 9am: at least 3 per week, held for 4 weeks (not met yet)." in body["text"]
    assert any(line.startswith("Mornings out by 9am rose from 1 on ") and "to 4 per week on " in line
               and "(2 readings in this period): a meaningful improvement." in line
               for line in section(body, "Progress"))
    assert "goal_not_observable" not in {h["code"] for h in body["quality_hints"]}
