"""The caseload summary: counts, and one row per client sorted, filtered and paged in PostgreSQL."""

from __future__ import annotations

from sqlalchemy import event

from tests.support.factories import create
from tests.support.progress import ALL, ago, goal_with_marker, instrument_marker, phq9_series, record, series


async def four_clients(c) -> dict:
    """Baseline 8 weeks ago, latest 2 days ago. A: PHQ-9 18 -> 9 recovered (9 better than 4 weeks ago) and an
    unresolved safety alert; B: PHQ-9 12 -> 10 no reliable change (2 better: off track); C: PHQ-9 19 -> 12 reliably
    improved (7 better); D: GAD-7 4 -> 12 reliably deteriorated (off track), a marker never measured (stale), a
    milestone done 5 days ago (in the period), one 60 days ago (not), and one planned, due in 10 days."""
    ids = {}
    for name, (before, after) in zip("ABC", ((18, 9), (12, 10), (19, 12)), strict=True):
        ids[name] = (await create(c, "clients"))["id"]
        await phq9_series(c, ids[name], [(before, ago(56)), (after, ago(2))], lifecycle="active")
    ids["D"] = (await create(c, "clients"))["id"]
    g, _ = await series(c, ids["D"], "gad7", [(4, ago(56)), (12, ago(2))], lifecycle="active")
    await create(c, "outcome-markers", client_id=ids["D"], goal_id=g["id"], name="Never measured")
    await create(c, "milestones", client_id=ids["D"], goal_id=g["id"], status="done", completed_at=ago(5))
    await create(c, "milestones", client_id=ids["D"], goal_id=g["id"], status="done", completed_at=ago(60))
    await create(c, "milestones", client_id=ids["D"], goal_id=g["id"], due_date=ago(-10)[:10])
    ids["D_goal"] = g["id"]
    await create(c, "safety-alerts", client_id=ids["A"], reason="Clinician concern")
    return ids


async def test_caseload_counts_and_rows(api, c):
    ids = await four_clients(c)
    other = api.client(await api.token(await api.org("B"), ALL))
    await phq9_series(other, (await create(other, "clients"))["id"], [(18, ago(56)), (9, ago(2))])

    r = await c.get("/v1/progress/summary")
    assert r.status_code == 200, r.text
    s = r.json()
    assert list(s)[0] == "safety_priority_clients"
    assert (s["safety_priority_clients"], s["open_safety_alerts"], s["client_count"]) == ([ids["A"]], 1, 4)
    assert s["by_label"] == {"recovered": 1, "reliably_improved": 1, "no_reliable_change": 1,
                             "reliably_deteriorated": 1}
    assert s["by_recovery"]["insufficient_data"] == 4  # nobody has both PHQ-9 and GAD-7
    assert s["by_trend"] == {"improving": 3, "worsening": 1, "unchanged": 0, "insufficient_data": 0,
                             "not_measured": 1}
    assert s["off_track_count"] == 2
    assert {g["client_id"] for g in s["off_track_goals"]} == {ids["B"], ids["D"]}
    assert (s["milestones_completed"], s["stale_markers"]) == (1, 1)
    rows = s["clients"]
    assert [row["client_id"] for row in rows] == [ids[k] for k in "ABCD"]  # safety first, then longest unmeasured
    a, d = rows[0], rows[3]
    assert (a["safety_priority"], a["phq9"], a["gad7"]) == (True, {"value": 9, "band": "mild", "label": "recovered"},
                                                            None)
    assert (a["off_track_goals"], a["stale"], a["next_milestone_due"], a["recovery"]) == (0, False, None,
                                                                                          "insufficient_data")
    assert d["gad7"] == {"value": 12, "band": "moderate", "label": "reliably_deteriorated"}
    assert (d["off_track_goals"], d["next_milestone_due"]) == (1, ago(-10)[:10])
    assert d["last_measured"] is not None
    assert s["next_cursor"] is None

    r = await c.get("/v1/progress/summary", params={"client_id": [ids["A"], ids["B"]], "since": ago(90)})
    s = r.json()
    assert (s["client_count"], s["milestones_completed"], len(s["clients"])) == (2, 0, 2)
    assert s["by_label"] == {"recovered": 1, "reliably_improved": 0, "no_reliable_change": 1,
                             "reliably_deteriorated": 0}


async def test_sort_filters_and_pages(c):
    ids = await four_clients(c)
    ids["E"] = (await create(c, "clients"))["id"]  # never measured: stale, and sorted as measured longest ago

    async def order(**params) -> list[str]:
        r = await c.get("/v1/progress/summary", params=params)
        assert r.status_code == 200, r.text
        names = {v: k for k, v in ids.items()}
        return [names[row["client_id"]] for row in r.json()["clients"]]

    assert await order() == list("AEBCD")
    assert await order(sort="-phq9") == list("CBA") + sorted("DE", key=lambda k: ids[k])  # absent readings last
    assert await order(sort="phq9") == list("ABC") + sorted("DE", key=lambda k: ids[k])
    assert await order(sort="-gad7,client_id") == ["D", *sorted("ABCE", key=lambda k: ids[k])]
    assert (await order(sort="-last_measured"))[:4] == list("DCBA")  # never measured last when descending
    assert (await order(sort="-last_measured"))[-1] == "E"
    assert await order(sort="-off_track_goals,client_id") == [*sorted("BD", key=lambda k: ids[k]),
                                                              *sorted("ACE", key=lambda k: ids[k])]
    assert (await order(sort="next_milestone_due"))[0] == "D"
    assert await order(sort="-client_id") == sorted("ABCDE", key=lambda k: ids[k], reverse=True)
    assert await order(off_track="true") == list("BD")
    assert await order(off_track="false") == list("AEC")
    assert await order(safety_priority="true") == ["A"]
    assert await order(stale="true") == ["E"]
    assert await order(stale="false", safety_priority="false", sort="phq9") == list("BCD")

    for sort in ("-phq9", "-safety_priority,last_measured", "client_id", "next_milestone_due,-gad7"):
        everything = await order(sort=sort)
        seen, cursor, pages = [], None, 0
        while True:
            params = {"sort": sort, "limit": 2, **({"cursor": cursor} if cursor else {})}
            r = await c.get("/v1/progress/summary", params=params)
            body = r.json()
            seen += [row["client_id"] for row in body["clients"]]
            cursor, pages = body["next_cursor"], pages + 1
            if not cursor:
                assert "link" not in r.headers
                break
            assert r.headers["link"].endswith('rel="next"')
        assert [k for i in seen for k, v in ids.items() if v == i] == everything, sort
        assert pages == 3


async def test_bad_sort_cursor_and_limit_are_422(c):
    await four_clients(c)
    for params, name in (({"sort": "phq9,mood"}, "sort"), ({"sort": "-"}, "sort"), ({"sort": "phq9,-phq9"}, "sort"),
                         ({"cursor": "nonsense"}, "cursor"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit"),
                         ({"off_track": "maybe"}, "off_track")):
        r = await c.get("/v1/progress/summary", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert name in {e["field"].split(".")[-1] for e in r.json()["errors"]}, (params, r.json())
    first = (await c.get("/v1/progress/summary", params={"limit": 1})).json()["next_cursor"]
    r = await c.get("/v1/progress/summary", params={"limit": 1, "sort": "phq9", "cursor": first})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "cursor")  # made for another sort


async def test_one_measurement_is_not_counted_among_the_labels(c):
    cid = (await create(c, "clients"))["id"]
    await record(c, cid, await instrument_marker(c, cid, "phq9"), [(14, ago(3))])
    s = (await c.get("/v1/progress/summary")).json()
    assert s["by_label"] == {"recovered": 0, "reliably_improved": 0, "no_reliable_change": 0,
                             "reliably_deteriorated": 0}
    assert s["by_trend"]["insufficient_data"] == 1
    assert s["clients"][0]["phq9"] == {"value": 14, "band": "moderate", "label": "insufficient_data"}


async def test_unlinked_measures_count(c):
    """A PHQ-9 no goal names counts in the caseload (it used to vanish)."""
    cid = (await create(c, "clients"))["id"]
    await record(c, cid, await instrument_marker(c, cid, "phq9"), [(14, ago(30)), (8, ago(3))])
    s = (await c.get("/v1/progress/summary")).json()
    assert s["by_label"]["recovered"] == 1
    assert s["by_trend"]["improving"] == 1
    assert s["clients"][0]["phq9"]["label"] == "recovered"


async def test_caseload_summary_is_one_statement(api, c):
    cid = (await create(c, "clients"))["id"]
    await phq9_series(c, cid, [(18, ago(56)), (9, ago(2))])
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001, ARG001
        statements.append(statement)

    engine = api.app.state.ctx.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        counted = {}
        for name, path in (("caseload", "/v1/progress/summary?limit=1&sort=-phq9"),
                           ("progress", f"/v1/clients/{cid}/progress"), ("summary", f"/v1/clients/{cid}/summary")):
            statements.clear()
            assert (await c.get(path)).status_code == 200
            counted[name] = [s for s in statements if "set_config" not in s and "audit_events" not in s]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(counted["caseload"]) == 1, counted["caseload"]
    assert len(counted["progress"]) == 2  # the client (404/410), then the progress
    assert len(counted["summary"]) == 3  # the client, the progress, the rest of the record


async def test_periods_and_patient_tokens(api, org, c):
    cid = (await create(c, "clients"))["id"]
    await phq9_series(c, cid, [(18, ago(56)), (9, ago(2))])
    other = (await create(c, "clients"))["id"]
    await phq9_series(c, other, [(12, ago(56)), (10, ago(2))])
    period = {"since": "2026-10-02T00:00:00Z", "until": "2026-10-01T00:00:00Z"}
    r = await c.get("/v1/progress/summary", params=period)
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "since")
    assert (await c.get(f"/v1/clients/{cid}/progress.svg", params=period)).status_code == 422
    assert (await c.get("/v1/progress/summary", params={"since": "2026-10-01T00:00"})).status_code == 422  # no zone
    patient = api.client(await api.token(org, "patient/Progress.rs", patient=cid))
    s = (await patient.get("/v1/progress/summary")).json()
    assert (s["client_count"], s["by_label"]["recovered"], s["by_label"]["no_reliable_change"]) == (1, 1, 0)
    assert [row["client_id"] for row in s["clients"]] == [cid]
    s = (await patient.get("/v1/progress/summary", params={"client_id": other})).json()
    assert (s["client_count"], s["clients"]) == (0, [])


async def test_who_may_read_the_caseload(api, org, c):
    cid = (await create(c, "clients"))["id"]
    await goal_with_marker(c, cid, name="Bus rides per week")
    for scopes in ("system/Client.rs system/Goal.rs", "system/Progress.r"):
        r = await api.client(await api.token(org, scopes)).get("/v1/progress/summary")
        assert r.status_code == 403, scopes
        assert 'scope="system/Progress.s"' in r.headers["www-authenticate"]
    assert (await api.client(None).get("/v1/progress/summary")).status_code == 401
    theirs = (await api.client(await api.token(await api.org("B"), ALL)).get("/v1/progress/summary")).json()
    assert (theirs["client_count"], theirs["clients"]) == (0, [])
    mine = (await api.client(await api.token(org, "system/Progress.s")).get("/v1/progress/summary")).json()
    assert [row["client_id"] for row in mine["clients"]] == [cid]


async def test_the_rows_shown_are_audited_in_rest_and_graphql(api, org, c):
    ids = [(await create(c, "clients"))["id"] for _ in range(3)]
    reader = api.client(await api.token(org, "system/Progress.s"))
    for query in (lambda: reader.get("/v1/progress/summary", params={"limit": 2, "sort": "client_id"}),
                  lambda: reader.post("/graphql", json={"query": '{ progressSummary(limit: 2, sort: "client_id") '
                                                                 "{ clients { clientId } } }"})):
        before = await api.db.fetchval("SELECT coalesce(max(seq), 0) FROM audit_events")
        assert (await query()).status_code == 200
        rows = await api.db.fetch("SELECT resource_type, client_ids FROM audit_events WHERE seq > $1 "
                                  "AND resource_type = 'Progress'", before)
        assert [sorted(str(i) for i in r["client_ids"]) for r in rows] == [sorted(ids)[:2]]
