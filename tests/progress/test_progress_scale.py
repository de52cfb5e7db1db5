"""The caseload summary over 2,000 clients answers in one request, with one statement.

Seeded set-based (owner role, one INSERT ... SELECT per table): 2,000 clients, 4,000 active goals
(started 60 days ago), one PHQ-9 marker and one frequency marker per client, six measurements each
ten days apart (24,000 measurements), two done milestones per goal.
PHQ-9 runs 19 -> 9 (recovered for every client; 6 better than 30 days ago, so on track); the frequency marker
5 -> 10 (improving: 3 better than 30 days ago, over its minimal change of 2.7, a tenth of 0 to 27).
"""

from __future__ import annotations

import time

from tests.support.harness import Api

N = 2000

SEED = [
    "INSERT INTO clients (org_id, id, display_name, status) "
    "SELECT $1, gen_random_uuid(), 'Client ' || i, 'active' FROM generate_series(1, {n}) i",
    "INSERT INTO strengths (org_id, id, client_id, domain, kind, label, source, status, evidence) "
    "SELECT $1, gen_random_uuid(), c.id, 'practical', 'skill', 'problem-solving', 'client_report', 'confirmed', '{{}}' "
    "FROM clients c WHERE c.org_id = $1",
    "INSERT INTO goals (org_id, id, client_id, description, strength_ids, lifecycle, achievement, start_date, "
    "barriers) SELECT $1, gen_random_uuid(), s.client_id, 'Goal ' || k, ARRAY[s.id], 'active', 'in_progress', "
    "current_date - 60, '{{}}' FROM strengths s, generate_series(1, 2) k WHERE s.org_id = $1",
    "INSERT INTO outcome_markers (org_id, id, client_id, kind, name, unit, instrument, min, max, direction, goal_id) "
    "SELECT $1, gen_random_uuid(), g.client_id, "
    "CASE g.description WHEN 'Goal 1' THEN 'instrument' ELSE 'frequency' END, "
    "CASE g.description WHEN 'Goal 1' THEN 'PHQ-9' ELSE 'Walks per week' END, "
    "CASE g.description WHEN 'Goal 1' THEN '{{score}}' ELSE '/wk' END, "
    "CASE g.description WHEN 'Goal 1' THEN 'phq9' END, 0, 27, "
    "CASE g.description WHEN 'Goal 1' THEN 'lower_is_better' ELSE 'higher_is_better' END, g.id "
    "FROM goals g WHERE g.org_id = $1",
    "INSERT INTO measurements (org_id, id, client_id, marker_id, value, observed_at) "
    "SELECT $1, gen_random_uuid(), m.client_id, m.id, "
    "CASE m.kind WHEN 'instrument' THEN 9 + 2 * j ELSE 10 - j END, now() - make_interval(days => 10 * j) "
    "FROM outcome_markers m, generate_series(0, 5) j WHERE m.org_id = $1",
    "INSERT INTO milestones (org_id, id, client_id, goal_id, title, completion_criteria, sequence, status, "
    "completed_at) SELECT $1, gen_random_uuid(), g.client_id, g.id, 'Step ' || k, 'Did it on two days', k, 'done', "
    "now() - make_interval(days => 20 * k) FROM goals g, generate_series(1, 2) k WHERE g.org_id = $1",
]


async def test_caseload_summary_over_2000_clients(api: Api):
    org = await api.org("Big")
    conn = await api.db.connect()
    try:
        for statement in SEED:
            await conn.execute(statement.format(n=N), org.id)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    c = api.client(await api.token(org, "system/Progress.rs"))
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        r = await c.get("/v1/progress/summary")
        timings.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
    s = r.json()
    assert s["client_count"] == N
    assert s["by_label"]["recovered"] == N
    assert s["by_trend"] == {"improving": 2 * N, "worsening": 0, "unchanged": 0, "insufficient_data": 0,
                             "not_measured": 0}
    assert len(s["clients"]) == 50
    assert s["next_cursor"]
    assert all(row["phq9"] == {"value": 9, "band": "mild", "label": "recovered"} for row in s["clients"])
    assert s["off_track_count"] == 0
    assert s["milestones_completed"] == 2 * N  # the 20-days-ago ones; the 40-days-ago ones are out of the period
    assert s["stale_markers"] == 0
    print(f"caseload summary over {N} clients: best {min(timings) * 1000:.0f} ms, runs "
          + ", ".join(f"{t * 1000:.0f}" for t in timings))
    assert min(timings) < 5.0
