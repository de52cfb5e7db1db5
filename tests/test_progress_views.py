"""The caseload summary, the clinical summary, the SVG chart, and who may see them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.factories import create
from tests.test_progress import GAD7, PHQ9, ago, goal_with_marker, phq9_series

ALL = "system/*.cruds"
SVG = "{http://www.w3.org/2000/svg}"
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture
async def org(api):
    return await api.org("A")


@pytest.fixture
async def c(api, org):
    return api.client(await api.token(org, ALL))


# ---------------------------------------------------------------- caseload


async def test_caseload_summary_counts(api, c):
    """Four clients, one instrument series each, baseline 8 weeks ago and latest 2 days ago:
    PHQ-9 18 -> 9 recovered; 12 -> 10 no reliable change; 19 -> 12 reliably improved (RCI -2.25, still a case);
    GAD-7 4 -> 12 reliably deteriorated (and off track: worse than 4 weeks ago). One more marker never measured
    (stale); one milestone done 5 days ago (in the period), one 60 days ago (not); one open safety alert.
    Another organization's records count nowhere."""
    ids = []
    for before, after in ((18, 9), (12, 10), (19, 12)):
        cid = (await create(c, "clients"))["id"]
        ids.append(cid)
        await phq9_series(c, cid, [(before, ago(56)), (after, ago(2))], lifecycle="active")
    cid = (await create(c, "clients"))["id"]
    ids.append(cid)
    g, m = await goal_with_marker(c, cid, goal={"lifecycle": "active"}, kind="instrument", instrument="gad7",
                                  name="GAD-7")
    for total, days in ((4, 56), (12, 2)):
        await create(c, "measurements", client_id=cid, marker_id=m["id"], value=None, items=GAD7[total],
                     observed_at=ago(days))
    await create(c, "outcome-markers", client_id=cid, goal_id=g["id"], name="Never measured")
    await create(c, "milestones", client_id=cid, goal_id=g["id"], status="done", completed_at=ago(5))
    await create(c, "milestones", client_id=cid, goal_id=g["id"], status="done", completed_at=ago(60))
    await create(c, "safety-alerts", client_id=ids[0], reason="Clinician concern")
    other = api.client(await api.token(await api.org("B"), ALL))
    ocid = (await create(other, "clients"))["id"]
    await phq9_series(other, ocid, [(18, ago(56)), (9, ago(2))])

    r = await c.get("/v1/progress/summary")
    assert r.status_code == 200, r.text
    s = r.json()
    assert list(s)[0] == "safety_priority_clients"
    assert s["safety_priority_clients"] == [ids[0]]
    assert s["open_safety_alerts"] == 1
    assert s["clients"] == 4
    assert s["by_label"] == {"recovered": 1, "reliably_improved": 1, "no_reliable_change": 1,
                             "reliably_deteriorated": 1}
    assert s["by_trend"] == {"improving": 3, "worsening": 1, "unchanged": 0, "not_measured": 1}
    assert s["off_track_count"] == 1
    assert s["off_track_goals"] == [{"goal_id": g["id"], "client_id": cid, "safety_priority": False}]
    assert s["milestones_completed"] == 1
    assert s["stale_markers"] == 1
    assert (s["stale_days"], s["off_track_days"]) == (14, 28)

    r = await c.get("/v1/progress/summary", params={"client_id": ids[:2], "since": ago(90), "stale_days": 1})
    s = r.json()
    assert s["clients"] == 2
    assert s["by_label"] == {"recovered": 1, "reliably_improved": 0, "no_reliable_change": 1,
                             "reliably_deteriorated": 0}
    assert s["milestones_completed"] == 0
    assert s["stale_markers"] == 2  # latest 2 days ago is older than 1 day


async def test_caseload_summary_is_one_statement(api, c):
    from sqlalchemy import event

    cid = (await create(c, "clients"))["id"]
    await phq9_series(c, cid, [(18, ago(56)), (9, ago(2))])
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001, ARG001
        statements.append(statement)

    engine = api.app.state.ctx.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert (await c.get("/v1/progress/summary")).status_code == 200
        summary_statements = [s for s in statements if "set_config" not in s and "audit_events" not in s]
        statements.clear()
        assert (await c.get(f"/v1/clients/{cid}/progress")).status_code == 200
        progress_statements = [s for s in statements if "set_config" not in s and "audit_events" not in s]
        statements.clear()
        assert (await c.get(f"/v1/clients/{cid}/summary")).status_code == 200
        clinical_statements = [s for s in statements if "set_config" not in s and "audit_events" not in s]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(summary_statements) == 1, summary_statements
    assert len(progress_statements) == 2, progress_statements  # the client (404/410), then the progress
    # the client, the progress, the rest of the record, and the unresolved alerts (safety.unresolved_alerts)
    assert len(clinical_statements) == 4, clinical_statements


async def test_periods_must_be_in_order_and_patient_tokens_see_their_patient(api, org, c):
    cid = (await create(c, "clients"))["id"]
    await phq9_series(c, cid, [(18, ago(56)), (9, ago(2))])
    other = (await create(c, "clients"))["id"]
    await phq9_series(c, other, [(12, ago(56)), (10, ago(2))])
    period = {"since": "2026-10-02T00:00:00Z", "until": "2026-10-01T00:00:00Z"}
    r = await c.get("/v1/progress/summary", params=period)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "since"
    assert (await c.get(f"/v1/clients/{cid}/progress.svg", params=period)).status_code == 422
    assert (await c.get("/v1/progress/summary", params={"since": "2026-10-01"})).status_code == 422  # no zone
    patient = api.client(await api.token(org, "patient/Progress.rs", patient=cid))
    s = (await patient.get("/v1/progress/summary")).json()
    assert s["clients"] == 1
    assert s["by_label"]["recovered"] == 1
    assert s["by_label"]["no_reliable_change"] == 0
    s = (await patient.get("/v1/progress/summary", params={"client_id": other})).json()
    assert s["clients"] == 0


# ---------------------------------------------------------------- clinical summary


async def test_clinical_summary_is_strengths_based_deterministic_and_hints(c):
    cid = (await create(c, "clients", preferred_future="Back at work and riding the bus"))["id"]
    solving = await create(c, "strengths", client_id=cid, label="problem-solving", status="confirmed",
                           domain="practical", kind="skill",
                           description="breaks a problem into small steps and tries the first one",
                           context="at work", evidence=["Fixed the rota clash with a coworker"])
    motivated = await create(c, "strengths", client_id=cid, label="motivated", description=None, domain="personal",
                             kind="character")
    caring = await create(c, "strengths", client_id=cid, label="caring", description="Is a very kind and caring person",
                          domain="relational", kind="character", status="confirmed", evidence=["Visits her aunt"])
    goal, marker = await goal_with_marker(c, cid, goal={"description": "Take the bus to work three days a week",
                                                        "lifecycle": "active", "start_date": "2026-09-01"},
                                          kind="instrument", instrument="phq9", name="PHQ-9")
    for total, at in ((18, "2026-09-01T10:00:00Z"), (9, "2026-09-29T10:00:00Z")):
        await create(c, "measurements", client_id=cid, marker_id=marker["id"], value=None, items=PHQ9[total],
                     observed_at=at)
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

    r1 = await c.get(f"/v1/clients/{cid}/summary", params={"since": "2026-10-01"})
    r2 = await c.get(f"/v1/clients/{cid}/summary", params={"since": "2026-10-01"})
    assert r1.status_code == 200, r1.text
    assert r1.json() == r2.json()
    body = r1.json()
    text = body["text"]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "summary.txt").write_text(text)
    assert [s["title"] for s in body["sections"]] == ["Assessment", "Goals", "Progress since 2026-10-01"]
    assert "Client applied problem-solving (identified strength) in 2 situations since 2026-10-01" in text
    assert "PHQ-9 fell from 18 to 9, a reliable improvement (RCI -2.89)" in text
    assert "(recovered)" in text
    assert "what the client learned: \u201cBreaking it down makes it doable\u201d" in text
    assert "confidence 3 to 7 of 10" in text
    assert "Milestone reached: \u201cTwo stops\u201d" in text
    assert "client breaks a problem into small steps" in text
    assert "Milestones: 1 of 2 done" in text
    assert "Back at work and riding the bus" in text
    hints = {(h["code"], h["record_id"]) for h in body["quality_hints"]}
    assert ("strength_not_behavioural", motivated["id"]) in hints
    assert ("hypothesis_without_evidence", motivated["id"]) in hints
    assert ("strength_not_behavioural", caring["id"]) in hints  # adjectives are not behaviour
    assert ("hypothesis_without_evidence", caring["id"]) not in hints  # confirmed, with a lived example
    assert ("goal_without_target", goal["id"]) in hints
    assert ("milestone_not_observable", vague["id"]) in hints
    assert not {h for h in hints if h[1] == solving["id"]}  # the behavioural, confirmed strength is fine


async def test_clinical_summary_puts_safety_first(c):
    cid = (await create(c, "clients"))["id"]
    await create(c, "safety-alerts", client_id=cid, reason="Clinician concern")
    body = (await c.get(f"/v1/clients/{cid}/summary")).json()
    assert body["sections"][0]["title"] == "Safety"
    assert "Clinician concern" in body["sections"][0]["lines"][1]
    assert body["safety_priority"] is True
    assert body["text"].split("\n\n")[1].startswith("Safety")


# ---------------------------------------------------------------- chart


async def test_chart_is_accessible_svg_with_every_point_in_range(c):
    cid = (await create(c, "clients"))["id"]
    goal, marker = await phq9_series(c, cid, [(18, "2026-09-01T10:00:00Z"), (16, "2026-09-08T10:00:00Z"),
                                              (12, "2026-09-15T10:00:00Z"), (10, "2026-09-22T10:00:00Z"),
                                              (9, "2026-09-29T10:00:00Z")], start_date="2026-09-01")
    await create(c, "milestones", client_id=cid, goal_id=goal["id"], title="Rode the bus <alone> & back",
                 status="done", completed_at="2026-09-18T12:00:00Z")
    await create(c, "milestones", client_id=cid, goal_id=goal["id"], title="Full week", due_date="2026-09-26")
    r = await c.get(f"/v1/clients/{cid}/progress.svg", params={"marker_id": marker["id"]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert len(r.content) < 8000
    root = ET.fromstring(r.text)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "PHQ-9 (score) over time"
    desc = root.find(f"{SVG}desc").text
    assert "5 measurements" in desc
    assert "Rode the bus <alone> & back" in desc  # escaped in the markup, intact once parsed
    points = root.findall(f".//{SVG}circle[@class='point']")
    assert len(points) == 5
    assert len(root.findall(f".//{SVG}line[@class='milestone']")) == 2
    assert len(root.findall(f".//{SVG}rect[@class='band']")) == 5  # PHQ-9 severity bands
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "Date (UTC)" in texts
    assert "PHQ-9 (score)" in texts
    _render_png(r.text, "progress_phq9.png")

    r = await c.get(f"/v1/clients/{cid}/progress.svg", params={
        "marker_id": marker["id"], "since": "2026-09-07T00:00:00Z", "until": "2026-09-23T00:00:00Z"})
    assert len(ET.fromstring(r.text).findall(f".//{SVG}circle[@class='point']")) == 3

    # without marker_id: the first goal's marker
    default = await c.get(f"/v1/clients/{cid}/progress.svg")
    assert len(ET.fromstring(default.text).findall(f".//{SVG}circle[@class='point']")) == 5


async def test_chart_of_a_custom_marker(c):
    cid = (await create(c, "clients"))["id"]
    _, marker = await goal_with_marker(c, cid, name="Minutes to calm down", unit="min", min=0, max=240,
                                       direction="lower_is_better", kind="recovery_time")
    for value, day in ((60, 1), (50, 8), (40, 15), (35, 22), (25, 29)):
        await create(c, "measurements", client_id=cid, marker_id=marker["id"], value=value,
                     observed_at=f"2026-10-{day:02d}T10:00:00Z")
    r = await c.get(f"/v1/clients/{cid}/progress.svg", params={"marker_id": marker["id"]})
    root = ET.fromstring(r.text)
    assert len(root.findall(f".//{SVG}circle[@class='point']")) == 5
    assert not root.findall(f".//{SVG}rect[@class='band']")
    assert "lower is better" in root.find(f"{SVG}desc").text
    _render_png(r.text, "progress_custom.png")


def _render_png(svg: str, name: str) -> None:
    """A PNG for a person to look at (tests/artifacts is gitignored); resvg-py is a dev dependency."""
    resvg = pytest.importorskip("resvg_py")
    png = resvg.svg_to_bytes(svg_string=svg, font_family="DejaVu Sans", sans_serif_family="DejaVu Sans")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(png)


# ---------------------------------------------------------------- who may see it


async def test_scopes_other_organizations_and_deleted_clients(api, org, c):
    cid = (await create(c, "clients"))["id"]
    _, marker = await goal_with_marker(c, cid, name="Bus rides per week")
    paths = [f"/v1/clients/{cid}/progress", f"/v1/clients/{cid}/summary",
             f"/v1/clients/{cid}/progress.svg?marker_id={marker['id']}"]
    no_progress = api.client(await api.token(org, "system/Client.rs system/Goal.rs"))
    for path in [*paths, "/v1/progress/summary"]:
        r = await no_progress.get(path)
        assert r.status_code == 403, path
        assert r.headers["content-type"] == "application/problem+json"
        assert "insufficient_scope" in r.headers["www-authenticate"]
    read_only = api.client(await api.token(org, "system/Progress.r"))
    assert (await read_only.get(paths[0])).status_code == 200
    r = await read_only.get("/v1/progress/summary")
    assert r.status_code == 403
    assert 'scope="system/Progress.s"' in r.headers["www-authenticate"]

    other = api.client(await api.token(await api.org("B"), ALL))
    other_marker = (await create(other, "outcome-markers"))["id"]
    for path in paths:
        theirs = await other.get(path)
        assert theirs.status_code == 404, path
        assert theirs.headers["content-type"] == "application/problem+json"
    # a marker of another client of the same organization is as unknown
    cid2 = (await create(c, "clients"))["id"]
    r = await c.get(f"/v1/clients/{cid2}/progress.svg", params={"marker_id": marker["id"]})
    assert r.status_code == 404
    r = await c.get(f"/v1/clients/{cid}/progress.svg", params={"marker_id": other_marker})
    assert r.status_code == 404
    # a patient token sees only its patient
    patient = api.client(await api.token(org, "patient/Progress.r", patient=cid2))
    assert (await patient.get(f"/v1/clients/{cid2}/progress")).status_code == 200
    assert (await patient.get(paths[0])).status_code == 404

    assert (await c.delete(f"/v1/clients/{cid}")).status_code == 204
    for path in paths:
        assert (await c.get(path)).status_code == 410, path
    assert (await c.get("/v1/progress/summary")).json()["clients"] == 1


async def test_clinical_summary_says_targets_and_units_in_words(c):
    cid = (await create(c, "clients"))["id"]
    goal, marker = await goal_with_marker(c, cid, goal={"description": "Walk to the shop before 9am"},
                                          name="Mornings out by 9am", unit="/wk", min=0, max=7)
    r = await c.patch(f"/v1/goals/{goal['id']}", json={"target": {
        "marker_id": marker["id"], "comparator": ">=", "value": 3, "period": "P1W", "duration": "P4W"}})
    assert r.status_code == 200, r.text
    for value, day in ((1, 40), (4, 3)):
        await create(c, "measurements", client_id=cid, marker_id=marker["id"], value=value, observed_at=ago(day))
    body = (await c.get(f"/v1/clients/{cid}/summary")).json()
    assert "Target: Mornings out by 9am: at least 3 per week, held for 4 weeks." in body["text"]
    assert "Mornings out by 9am rose from 1 to 4 per week, an improvement (2 measurements" in body["text"]
    assert "goal_without_target" not in {h["code"] for h in body["quality_hints"]}
