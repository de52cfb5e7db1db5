"""GraphQL and REST give the same progress numbers (the same service functions behind both)."""

from __future__ import annotations

from tests.factories import create
from tests.test_progress import ago, c, phq9_series, progress  # noqa: F401 - fixture

QUERY = """
query($id: UUID!) {
  client(id: $id) {
    progress {
      safetyPriority
      goals { goalId milestonesDone milestonesTotal
              markers { markerId baseline latest change improvement slopePerWeek rci label reliableChange } }
    }
  }
  progressSummary { clients openSafetyAlerts }
}
"""


def snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)


async def test_graphql_and_rest_give_the_same_numbers(c):  # noqa: F811
    client = await create(c, "clients")
    cid = client["id"]
    await phq9_series(c, cid, [(18, ago(40)), (12, ago(20)), (9, ago(2))], start_date=ago(45)[:10])
    rest = await progress(c, cid)
    r = await c.post("/graphql", json={"query": QUERY, "variables": {"id": cid}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "errors" not in body, body
    gql = body["data"]["client"]["progress"]
    assert gql["safetyPriority"] == rest["safety_priority"]
    rest_goal = rest["goals"][0]
    gql_goal = gql["goals"][0]
    assert gql_goal["goalId"] == rest_goal["goal_id"]
    for key in ("milestonesDone", "milestonesTotal"):
        assert gql_goal[key] == rest_goal[snake(key)]
    for gm, rm in zip(gql_goal["markers"], rest_goal["markers"], strict=True):
        for key, value in gm.items():
            assert value == rm[snake(key)], key
    assert gql_goal["markers"][0]["label"] == "recovered"
    summary = (await c.get("/v1/progress/summary")).json()
    assert body["data"]["progressSummary"]["clients"] == summary["clients"]
    assert body["data"]["progressSummary"]["openSafetyAlerts"] == summary["open_safety_alerts"]


async def test_progress_fields_are_guarded(api):
    a, b = await api.org("A"), await api.org("B")
    ca = api.client(await api.token(a, "system/*.cruds"))
    client = await create(ca, "clients")
    no_progress = api.client(await api.token(a, "system/Client.rs"))
    one = "query($id: UUID!) { client(id: $id) { id progress { safetyPriority } } }"
    body = (await no_progress.post("/graphql", json={"query": one, "variables": {"id": client["id"]}})).json()
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["client", "progress"], "FORBIDDEN")]
    assert body["data"]["client"]["id"] == client["id"]
    body = (await no_progress.post("/graphql", json={"query": "{ progressSummary { clients } }"})).json()
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["progressSummary"], "FORBIDDEN")]
    other = api.client(await api.token(b, "system/*.cruds"))
    body = (await other.post("/graphql", json={"query": QUERY, "variables": {"id": client["id"]}})).json()
    assert body["data"]["client"] is None
    assert body["data"]["progressSummary"]["clients"] == 0
    assert (await api.client(None).post("/graphql", json={"query": QUERY, "variables": {"id": client["id"]}})
            ).status_code == 401
