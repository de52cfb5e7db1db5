"""A batch-created measurement's versions: its first version is its own row until a change supersedes it (migration
0017), and every reader of versions (REST and FHIR history and vread, the Bulk Data export) sees exactly what it would
see had the batch written a history row, whichever path the change comes by; and no one else sees it."""

from __future__ import annotations

import uuid
from typing import Any

from service.fhir.mapping import observation_id
from tests.support.bulk import FAST, download, kick_off, runner, wait_for_manifest
from tests.support.factories import create
from tests.support.fhir import FHIR
from tests.support.harness import ALL, APP_ROLE, Api

AT = "2026-11-20T08:00:00.250000+09:00"
NINE = [1, 1, 1, 1, 1, 1, 1, 1, 0]  # PHQ-9 total 8: no alert


async def _setup(api: Any) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    mood = await create(c, "outcome-markers", min=0, max=10, name="Mood", kind="mood", unit="{score}")
    phq = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9",
                        client_id=mood["client_id"])
    return org, c, mood, phq


async def _batch(c: Any, mood: dict[str, Any], phq: dict[str, Any]) -> tuple[str, str]:
    cid = mood["client_id"]
    r = await c.post("/v1/measurements/batch", json={"measurements": [
        {"client_id": cid, "marker_id": mood["id"], "value": 4, "observed_at": AT, "note": "n",
         "source": "moodapp", "external_id": "v-1"},
        {"client_id": cid, "marker_id": phq["id"], "observed_at": "2026-11-20T08:00:00Z", "items": NINE}]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created", "created"]
    return results[0]["id"], results[1]["id"]


async def _versions(c: Any, mid: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """REST's history of the measurement and FHIR's vread of its version 1."""
    history = await c.get(f"/v1/history/measurements/{mid}")
    assert history.status_code == 200, history.text
    v1 = await c.get(f"{FHIR}/Observation/{observation_id('measurements', mid)}/_history/1")
    assert v1.status_code == 200, v1.text
    return history.json()["data"], v1.json()


async def test_a_batch_created_measurement_keeps_its_first_version_through_every_change(db):
    async with Api.start(db) as api:
        org, c, mood, phq = await _setup(api)
        single = await create(c, "measurements", client_id=mood["client_id"], marker_id=mood["id"], value=3,
                              observed_at=AT)
        single_history, _ = await _versions(c, single["id"])
        mood_id, phq_id = await _batch(c, mood, phq)
        for mid in (mood_id, phq_id):
            history, v1 = await _versions(c, mid)
            read = (await c.get(f"/v1/measurements/{mid}")).json()
            assert [(h["version"], h["action"]) for h in history] == [(1, "created")]
            # Written by the same token: the same author as a single create's first version.
            assert history[0]["changed_by"] == single_history[0]["changed_by"]
            assert history[0]["record"] == {**{k: v for k, v in read.items()
                                               if k not in ("safety_alert_ids", "band")}, "deleted_at": None}
            assert v1 == (await c.get(f"{FHIR}/Observation/{observation_id('measurements', mid)}")).json()
        before = {mid: await _versions(c, mid) for mid in (mood_id, phq_id)}
        # No history row yet: the first versions are the rows themselves.
        assert await api.db.fetchval("SELECT count(*) FROM history WHERE record_id = ANY($1::uuid[])",
                                     [mood_id, phq_id]) == 0

        # A correction by REST, a deletion by REST, and a correction by FHIR: version 1 stays as it was.
        fixed = await c.patch(f"/v1/measurements/{phq_id}", json={"items": [3, 3, 3, 3, 3, 3, 2, 0, 0]},
                              headers={"If-Match": 'W/"1"'})
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["value"] == 20
        assert fixed.json()["safety_alert"] is not None  # the alert, not lost
        assert (await c.delete(f"/v1/measurements/{mood_id}", headers={"If-Match": 'W/"1"'})).status_code == 204
        for mid, actions in ((phq_id, [(1, "created"), (2, "updated")]),
                             (mood_id, [(1, "created"), (2, "deleted")])):
            history, v1 = await _versions(c, mid)
            assert [(h["version"], h["action"]) for h in history] == actions
            assert history[0] == before[mid][0][0]
            # FHIR's vread: the same, but the Flags it links, which every read computes (the correction's alert).
            assert {k: v for k, v in v1.items() if k != "extension"} == \
                {k: v for k, v in before[mid][1].items() if k != "extension"}
        assert history[1]["changed_by"] == single_history[0]["changed_by"]
        rows = await api.db.fetch("SELECT record_id, version FROM history WHERE record_id = ANY($1::uuid[]) "
                                  "ORDER BY record_id, version", [mood_id, phq_id])
        assert len(rows) == 4  # both versions of each, now in the history
        assert await api.db.fetchval("SELECT count(*) FROM measurements WHERE first_version_by IS NOT NULL "
                                     "AND id = ANY($1::uuid[])", [mood_id, phq_id]) == 0
        # An upsert by the external id (a sync's update), of a measurement the same batch created.
        cid = mood["client_id"]
        up_id = (await c.post("/v1/measurements/batch", json={"measurements": [
            {"client_id": cid, "marker_id": mood["id"], "value": 5, "observed_at": AT, "source": "moodapp",
             "external_id": "v-2"}]})).json()["results"][0]["id"]
        first, first_v1 = await _versions(c, up_id)
        put = await c.put("/v1/measurements", params={"external_id": "moodapp|v-2"}, json={
            "client_id": cid, "marker_id": mood["id"], "value": 6, "observed_at": AT})
        assert put.status_code == 200, put.text
        history, v1 = await _versions(c, up_id)
        assert [(h["version"], h["record"]["value"]) for h in history] == [(1, 5.0), (2, 6.0)]
        assert history[0] == first[0]
        assert v1 == first_v1


async def test_versions_of_a_batch_created_measurement_are_refused_to_other_organizations_and_patients(db):
    async with Api.start(db) as api:
        org, c, mood, phq = await _setup(api)
        mood_id, _ = await _batch(c, mood, phq)
        other_org = api.client(await api.token(await api.org("Other"), ALL))
        other_client = await create(c, "clients")
        other_patient = api.client(await api.token(org, "patient/*.rs", patient=uuid.UUID(other_client["id"])))
        own_patient = api.client(await api.token(org, "patient/*.rs", patient=uuid.UUID(mood["client_id"])))
        no_scope = api.client(await api.token(org, "system/Client.rs"))
        obs = observation_id("measurements", mood_id)
        for url in (f"/v1/history/measurements/{mood_id}", f"{FHIR}/Observation/{obs}/_history",
                    f"{FHIR}/Observation/{obs}/_history/1"):
            assert (await other_org.get(url)).status_code == 404, url
            assert (await other_patient.get(url)).status_code == 404, url
            assert (await no_scope.get(url)).status_code == 403, url
            assert (await own_patient.get(url)).status_code == 200, url
        # Below the service too: the versions view runs under the tables' row-level security.
        conn = await api.db.connect(APP_ROLE)
        try:
            async with conn.transaction():
                for tenant, seen in ((str(uuid.uuid4()), 0), (str(org.id), 2)):
                    await conn.execute("SELECT set_config('app.org_id', $1, true)", tenant)
                    assert await conn.fetchval("SELECT count(*) FROM record_versions WHERE collection = "
                                               "'measurements' AND client_id = $1", uuid.UUID(mood["client_id"])) \
                        == seen
        finally:
            await conn.close()


async def test_an_export_reads_a_batch_created_measurement_as_it_was_at_transaction_time(db):
    async with Api.start(db, **FAST) as api:
        org, c, mood, phq = await _setup(api)
        mood_id, phq_id = await _batch(c, mood, phq)
        status = await kick_off(c, _type="Observation")
        # After the job's transactionTime, before a worker reads anything: both change.
        fixed = await c.patch(f"/v1/measurements/{phq_id}", json={"items": [3, 3, 3, 3, 3, 3, 2, 0, 0]})
        assert fixed.status_code == 200, fixed.text
        assert (await c.delete(f"/v1/measurements/{mood_id}")).status_code == 204
        async with runner(db):
            manifest = await wait_for_manifest(c, status)
        got = {r["id"]: r for r in (await download(c, manifest))["Observation"]}
        exported = {k: got[observation_id("measurements", k)] for k in (mood_id, phq_id)}
        assert exported[phq_id]["component"][-1]["valueQuantity"]["value"] == 8  # version 1, as it was
        assert exported[phq_id]["meta"]["versionId"] == "1"
        assert exported[mood_id]["meta"]["versionId"] == "1"  # not yet deleted then
