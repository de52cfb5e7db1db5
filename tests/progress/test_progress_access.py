"""Who may read progress, the summary and the chart: scopes (403), other organizations and patients (404), no
token (401), deleted clients (410)."""

from __future__ import annotations

from tests.support.factories import create
from tests.support.progress import ALL, goal_with_marker


async def test_scopes_other_organizations_and_deleted_clients(api, org):
    c = api.client(await api.token(org, ALL))
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
        assert (await api.client(None).get(path)).status_code == 401, path
    read_only = api.client(await api.token(org, "system/Progress.r"))
    for path in paths:
        assert (await read_only.get(path)).status_code == 200, path

    other = api.client(await api.token(await api.org("B"), ALL))
    other_marker = (await create(other, "outcome-markers"))["id"]
    for path in paths:
        theirs = await other.get(path)
        assert theirs.status_code == 404, path
        assert theirs.headers["content-type"] == "application/problem+json"
    # a marker of another client of the same organization is as unknown
    cid2 = (await create(c, "clients"))["id"]
    assert (await c.get(f"/v1/clients/{cid2}/progress.svg", params={"marker_id": marker["id"]})).status_code == 404
    assert (await c.get(f"/v1/clients/{cid}/progress.svg", params={"marker_id": other_marker})).status_code == 404
    # a patient token sees only its patient
    patient = api.client(await api.token(org, "patient/Progress.r", patient=cid2))
    assert (await patient.get(f"/v1/clients/{cid2}/progress")).status_code == 200
    assert (await patient.get(f"/v1/clients/{cid2}/summary")).status_code == 200
    for path in paths:
        assert (await patient.get(path)).status_code == 404, path

    assert (await c.delete(f"/v1/clients/{cid}")).status_code == 204
    for path in paths:
        assert (await c.get(path)).status_code == 410, path
    assert (await c.get("/v1/progress/summary")).json()["client_count"] == 1
