"""GraphQL and REST give the same progress numbers (the same service functions behind both)."""

from __future__ import annotations

from tests.support.factories import create
from tests.support.progress import (
    ago,
    instrument_marker,
    phq9_series,
    progress,
    record,
    series,
)

QUERY = """
query($id: UUID!) {
  client(id: $id) {
    progress {
      safetyPriority
      recovery { status phq9 gad7 }
      goals { goalId milestonesDone milestonesTotal targetMet stale offTrack
              markers { markerId baseline latest change improvement slopePerWeek rci label reliableChange
                        reliableChangeThreshold baselineBand latestBand stale minChange } }
      clientMeasures { markerId label latest latestBand }
    }
  }
  progressSummary(sort: "-phq9", limit: 1) {
    clientCount openSafetyAlerts nextCursor
    byLabel { recovered reliablyImproved noReliableChange reliablyDeteriorated }
    clients { clientId safetyPriority phq9 { value band label } gad7 { value band label } offTrackGoals recovery }
  }
}
"""


def snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)


def same(gql: dict, rest: dict) -> None:
    for key, value in gql.items():
        if isinstance(value, dict):
            same(value, rest[snake(key)])
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for g, r in zip(value, rest[snake(key)], strict=True):
                same(g, r)
        else:
            assert value == rest[snake(key)], key


async def test_graphql_and_rest_give_the_same_numbers(c):  # noqa: F811
    cid = (await create(c, "clients"))["id"]
    await phq9_series(c, cid, [(18, ago(40)), (12, ago(20)), (9, ago(2))], start_date=ago(45)[:10],
                      lifecycle="active")
    await record(c, cid, await instrument_marker(c, cid, "gad7"), [(11, ago(30)), (7, ago(2))])
    second = (await create(c, "clients"))["id"]
    await series(c, second, "phq9", [(14, ago(3))])
    rest = await progress(c, cid)
    r = await c.post("/graphql", json={"query": QUERY, "variables": {"id": cid}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "errors" not in body, body
    same(body["data"]["client"]["progress"], rest)
    assert body["data"]["client"]["progress"]["recovery"] == {"status": "recovered", "phq9": "recovered",
                                                              "gad7": "recovered"}
    summary = (await c.get("/v1/progress/summary", params={"sort": "-phq9", "limit": 1})).json()
    same(body["data"]["progressSummary"], summary)
    assert body["data"]["progressSummary"]["clients"][0]["clientId"] == second  # 14 before 9
    after = body["data"]["progressSummary"]["nextCursor"]
    page2 = (await c.post("/graphql", json={"query": "query($a: String) { progressSummary(sort: \"-phq9\", "
                                                     "cursor: $a) { clients { clientId } } }",
                                            "variables": {"a": after}})).json()
    assert [row["clientId"] for row in page2["data"]["progressSummary"]["clients"]] == [cid]
    bad = (await c.post("/graphql", json={"query": '{ progressSummary(sort: "mood") { clientCount } }'})).json()
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_progress_fields_are_guarded(api):
    a, b = await api.org("A"), await api.org("B")
    ca = api.client(await api.token(a, "system/*.cruds"))
    client = await create(ca, "clients")
    no_progress = api.client(await api.token(a, "system/Client.rs"))
    one = "query($id: UUID!) { client(id: $id) { id progress { safetyPriority } } }"
    body = (await no_progress.post("/graphql", json={"query": one, "variables": {"id": client["id"]}})).json()
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["client", "progress"], "FORBIDDEN")]
    assert body["data"]["client"]["id"] == client["id"]
    body = (await no_progress.post("/graphql", json={"query": "{ progressSummary { clientCount } }"})).json()
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["progressSummary"], "FORBIDDEN")]
    other = api.client(await api.token(b, "system/*.cruds"))
    body = (await other.post("/graphql", json={"query": QUERY, "variables": {"id": client["id"]}})).json()
    assert body["data"]["client"] is None
    assert (body["data"]["progressSummary"]["clientCount"], body["data"]["progressSummary"]["clients"]) == (0, [])
    assert (await api.client(None).post("/graphql", json={"query": QUERY, "variables": {"id": client["id"]}})
            ).status_code == 401
