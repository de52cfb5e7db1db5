"""FHIR Bulk Data export, driven as a Bulk Data client drives it: kick-off, poll, manifest, download; every line an
R4 resource equal to what read and search return; _since; a patient token; cancel; a job surviving its worker."""

from __future__ import annotations

import asyncio
from typing import Any

from service.fhir.export_runner import ExportRunner
from tests.support.bulk import (
    BASE,
    FAST,
    KICK_OFF,
    check_manifest,
    download,
    kick_off,
    local,
    runner,
    wait_for_manifest,
)
from tests.support.factories import create
from tests.support.fhir import FHIR, all_pages, demo_org
from tests.support.harness import Api
from tests.support.questionnaires import post_questionnaire_response, questionnaire_response

TYPES = ("Patient", "Goal", "Observation", "QuestionnaireResponse", "Flag")


async def searched(c: Any) -> dict[str, dict[str, Any]]:
    """Every resource the facade's searches return, by type/id."""
    out: dict[str, dict[str, Any]] = {}
    for fhir_type in TYPES:
        for resource in await all_pages(c, f"{FHIR}/{fhir_type}?_count=500"):
            out[f"{fhir_type}/{resource['id']}"] = resource
    return out


def by_key(files: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for fhir_type, resources in files.items():
        for resource in resources:
            key = f"{fhir_type}/{resource['id']}"
            assert key not in out, f"{key} exported twice"
            out[key] = resource
    return out


async def test_round_trip_kick_off_poll_manifest_download(db):
    async with Api.start(db, **FAST) as api:
        org = await demo_org(api)
        writer = api.client(await api.token(org, "system/*.cruds"))
        pid = (await all_pages(writer, f"{FHIR}/Patient?identifier=urn:demo:ehr:mrn|MRN-1001"))[0]["id"]
        qr = questionnaire_response(pid, [1, 0, 0, 0, 0, 0, 0, 0, 1])
        assert (await post_questionnaire_response(writer, qr)).status_code == 201
        c = api.client(await api.token(org, "system/*.rs"))
        status = await kick_off(c, _outputFormat="application/fhir+ndjson")
        # No worker yet: the job waits, and says so.
        r = await c.get(local(status))
        assert r.status_code == 202
        assert r.headers["retry-after"] == "1"
        assert r.headers["x-progress"]
        async with runner(db):
            manifest = await wait_for_manifest(c, status)
        check_manifest(manifest, f"{BASE}{FHIR}/$export?_outputFormat=application%2Ffhir%2Bndjson")
        job = await db.fetch("SELECT transaction_time FROM bulk_export_jobs")
        assert manifest["transactionTime"] == job[0]["transaction_time"].isoformat().replace("+00:00", "Z")
        assert {o["type"] for o in manifest["output"]} == set(TYPES)
        assert max(sum(1 for o in manifest["output"] if o["type"] == t) for t in TYPES) > 1  # split in parts
        files = await download(c, manifest)
        # Every line equals what read and search return (the same mapping functions), nothing is missing.
        assert by_key(files) == await searched(c)
        qr = files["QuestionnaireResponse"]
        assert any(e["url"].endswith("/safety-alert") for r in qr for e in r.get("extension", []))
        # The files need the token that started the job; every download is audited with what it disclosed.
        first = manifest["output"][0]["url"]
        assert (await api.http.get(local(first))).status_code == 401
        rows = await db.fetch("SELECT resource_type, resource_ids, path FROM audit_events WHERE action = 'export' "
                              "AND method = 'GET' AND path LIKE '%/files/%'")
        exported = {str(i) for r in rows for i in r["resource_ids"]}
        assert {p["id"] for p in files["Patient"]} <= exported
        assert len({r["path"] for r in rows}) == len(manifest["output"])
        done = await db.fetch("SELECT resource_type FROM audit_events WHERE request_id LIKE 'bulk-export-%'")
        assert {r["resource_type"] for r in done} >= {"BulkExport", "Client", "Measurement", "SafetyAlert"}


async def test_since_returns_only_later_changes(db):
    async with Api.start(db, **FAST) as api, runner(db):
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        before = [await create(c, "clients") for _ in range(3)]
        old = await create(c, "strengths", client_id=before[0]["id"])
        first = await wait_for_manifest(c, await kick_off(c))
        since = first["transactionTime"]
        assert len(by_key(await download(c, first))) == 3 + 1
        await asyncio.sleep(0.01)
        changed = await c.patch(f"/v1/clients/{before[1]['id']}", json={"display_name": "Renamed"})
        assert changed.status_code == 200
        new = await create(c, "strengths", client_id=before[2]["id"])
        second = await wait_for_manifest(c, await kick_off(c, _since=since))
        assert second["request"].endswith(f"?_since={since.replace(':', '%3A').replace('+', '%2B')}")
        got = by_key(await download(c, second))
        assert set(got) == {f"Patient/{before[1]['id']}", f"Observation/strength-{new['id']}"}
        assert got[f"Patient/{before[1]['id']}"]["name"][0]["text"] == "Renamed"
        assert f"Observation/strength-{old['id']}" not in got
        nothing = await wait_for_manifest(c, await kick_off(c, _since=second["transactionTime"]))
        assert nothing["output"] == []


async def test_patient_token_exports_only_its_patient(db):
    async with Api.start(db, **FAST) as api, runner(db):
        org = await demo_org(api)
        clinic = api.client(await api.token(org, "system/*.rs"))
        patients = await all_pages(clinic, f"{FHIR}/Patient")
        pid = patients[0]["id"]
        token = await api.token(org, "patient/*.rs", patient=pid)
        c = api.client(token)
        for path in ("/$export", "/Patient/$export", f"/Group/{org.id}/$export"):
            files = await download(c, await wait_for_manifest(c, await kick_off(c, path)))
            assert [p["id"] for p in files["Patient"]] == [pid]
            for fhir_type, resources in files.items():
                if fhir_type != "Patient":
                    assert resources, fhir_type
                    assert {r["subject"]["reference"] for r in resources} == {f"Patient/{pid}"}, fhir_type
        # The clinic's own job is not the patient app's, nor the other way round.
        theirs = await kick_off(clinic)
        assert (await c.get(local(theirs))).status_code == 404
        group = (await c.get(f"{FHIR}/Group/{org.id}")).json()
        assert [m["entity"]["reference"] for m in group["member"]] == [f"Patient/{pid}"]


async def test_cancelled_job_files_are_gone(db):
    async with Api.start(db, **FAST) as api, runner(db):
        org = await demo_org(api)
        c = api.client(await api.token(org, "system/*.rs"))
        status = await kick_off(c, _type="Patient,Observation")
        manifest = await wait_for_manifest(c, status)
        assert {o["type"] for o in manifest["output"]} == {"Patient", "Observation"}
        assert await db.fetchval("SELECT count(*) FROM bulk_export_chunks") > 0
        r = await c.delete(local(status))
        assert r.status_code == 202
        assert r.json()["resourceType"] == "OperationOutcome"
        assert (await c.get(local(status))).status_code == 404
        for item in manifest["output"]:
            assert (await c.get(local(item["url"]))).status_code == 404
        assert await db.fetchval("SELECT count(*) FROM bulk_export_chunks") == 0
        assert await db.fetchval("SELECT count(*) FROM bulk_export_files") == 0
        assert (await c.delete(local(status))).status_code == 404
        # A running job cancelled: its worker stops at its next step, and writes nothing more.
        running = await kick_off(c)
        assert (await c.delete(local(running))).status_code == 202
        await asyncio.sleep(0.3)
        assert await db.fetchval("SELECT count(*) FROM bulk_export_files") == 0


class Stalling(ExportRunner):
    """A worker that stops dead after three steps (as if its pod died): it never renews its lease again."""

    steps = 0
    stalled: asyncio.Event

    async def after_step(self, outcome: str) -> None:
        Stalling.steps += 1
        if Stalling.steps >= 3:
            Stalling.stalled.set()
            await asyncio.Event().wait()


async def test_job_survives_its_worker_and_reads_records_as_of_transaction_time(db):
    async with Api.start(db, **FAST) as api:
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        clients = [await create(c, "clients") for _ in range(30)]
        status = await kick_off(c, _type="Patient")
        Stalling.steps, Stalling.stalled = 0, asyncio.Event()
        async with runner(db, Stalling, bulk_export_page_size=4, bulk_export_lease_seconds=1):
            await asyncio.wait_for(Stalling.stalled.wait(), 30)
        job = (await db.fetch("SELECT transaction_time, resources, status FROM bulk_export_jobs"))[0]
        assert job["status"] == "in-progress"
        assert 0 < job["resources"] < 30
        # Meanwhile the records change: the export still reads them as they were at transactionTime.
        renamed = clients[0]["id"]
        assert (await c.patch(f"/v1/clients/{renamed}", json={"display_name": "Changed later"})).status_code == 200
        later = await create(c, "clients")
        assert (await c.delete(f"/v1/clients/{clients[1]['id']}")).status_code == 204
        async with runner(db, bulk_export_page_size=4):  # another worker, once the lease has run out
            manifest = await wait_for_manifest(c, status)
        assert manifest["transactionTime"] == job["transaction_time"].isoformat().replace("+00:00", "Z")
        patients = (await download(c, manifest))["Patient"]
        ids = [p["id"] for p in patients]
        assert len(ids) == len(set(ids)) == 30  # no line twice, none lost
        assert set(ids) == {cl["id"] for cl in clients}
        assert later["id"] not in ids
        names = {p["id"]: p["name"][0]["text"] for p in patients}
        assert names[renamed] == clients[0]["display_name"]
        attempts = await db.fetchval("SELECT attempts FROM bulk_export_jobs")
        assert attempts >= 2


async def test_kick_off_refusals(db):
    async with Api.start(db, **{**FAST, "bulk_export_max_active_jobs": 2}) as api:
        org = await api.org()
        c = api.client(await api.token(org, "system/*.rs"))

        async def outcome(path: str, status: int, headers: dict[str, str] | None = None, **params: str) -> Any:
            r = await c.get(f"{FHIR}{path}", params=params, headers=headers or KICK_OFF)
            assert r.status_code == status, (path, params, r.status_code, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"
            return r

        await outcome("/$export", 400, {"Accept": "application/fhir+json"})  # no Prefer: respond-async
        await outcome("/$export", 400, _outputFormat="text/csv")
        await outcome("/$export", 400, _type="Patient,Medication")
        await outcome("/$export", 400, _since="2026-11-01")  # a date is not an instant
        await outcome("/$export", 400, _typeFilter="Observation?code=x")  # unsupported: refused ...
        await outcome("/$export", 202, {**KICK_OFF, "Prefer": "respond-async, handling=lenient"},
                      _typeFilter="Observation?code=x")  # ... unless lenient
        await outcome("/$export", 202, _outputFormat="ndjson")
        too_many = await outcome("/$export", 429)
        assert too_many.headers["retry-after"]
        await outcome("/Group/not-a-group/$export", 404)


async def test_expired_files_are_swept(db):
    async with Api.start(db, **FAST) as api:
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        await create(c, "clients")
        status = await kick_off(c)
        async with runner(db, bulk_export_retention_hours=0.5 / 3600):
            manifest = await wait_for_manifest(c, status)
        assert manifest["output"]
        await asyncio.sleep(0.6)
        async with runner(db):  # a worker starting up sweeps at once
            for _ in range(100):
                if await db.fetchval("SELECT status FROM bulk_export_jobs") == "expired":
                    break
                await asyncio.sleep(0.05)
        assert (await c.get(local(status))).status_code == 404
        assert (await c.get(local(manifest["output"][0]["url"]))).status_code == 404
        assert await db.fetchval("SELECT count(*) FROM bulk_export_chunks") == 0


async def test_only_the_app_that_started_a_job_reaches_it_and_scopes_are_checked_per_type(db):
    async with Api.start(db, **FAST) as api, runner(db):
        org, other_org = await api.org("A"), await api.org("B")
        owner = api.client(await api.token(org, "system/*.rs"))
        await create(api.client(await api.token(org, "system/*.cruds")), "clients")
        status = await kick_off(owner)
        manifest = await wait_for_manifest(owner, status)
        file_url = local(manifest["output"][0]["url"])
        same_org_other_app = api.client(await api.token(org, "system/Client.rs"))
        other = api.client(await api.token(other_org, "system/*.rs"))
        for c in (same_org_other_app, other):
            assert (await c.get(local(status))).status_code == 404
            assert (await c.get(file_url)).status_code == 404
            assert (await c.delete(local(status))).status_code == 404
        assert (await other.get(f"{FHIR}/Group/{org.id}")).status_code == 404  # another organization's caseload
        assert (await other.get(f"{FHIR}/Group/{org.id}/$export", headers=KICK_OFF)).status_code == 404
        assert (await owner.get(file_url)).status_code == 200  # still there: nobody else could cancel it
        anonymous = api.client(None)
        for method, url in (("GET", f"{FHIR}/$export"), ("GET", local(status)), ("GET", file_url),
                            ("DELETE", local(status)), ("GET", f"{FHIR}/Group"), ("GET", f"{FHIR}/Group/{org.id}"),
                            ("GET", f"{FHIR}/QuestionnaireResponse"), ("POST", f"{FHIR}/QuestionnaireResponse")):
            r = await anonymous.request(method, url, headers=KICK_OFF)
            assert r.status_code == 401, (method, url)
            assert r.headers["www-authenticate"].startswith("Bearer")
        # A type asked for without its `s` is a 403 naming the scope; without _type, only what the token may search.
        goals_only = api.client(await api.token(org, "system/Goal.rs"))
        r = await goals_only.get(f"{FHIR}/$export", params={"_type": "Patient"}, headers=KICK_OFF)
        assert r.status_code == 403
        assert 'scope="system/Patient.s"' in r.headers["www-authenticate"]
        assert (await goals_only.get(f"{FHIR}/$export", params={"_type": "Goal"}, headers=KICK_OFF)).status_code == 202
        reader = api.client(await api.token(org, "system/Client.r"))  # read, no search
        r = await reader.get(f"{FHIR}/$export", headers=KICK_OFF)
        assert r.status_code == 403
        assert 'scope="system/*.s"' in r.headers["www-authenticate"]
        r = await reader.get(f"{FHIR}/Group")
        assert r.status_code == 403
        assert 'scope="system/Group.s"' in r.headers["www-authenticate"]
        assert (await reader.get(f"{FHIR}/Group/{org.id}")).status_code == 200
        qr_reader = api.client(await api.token(org, "system/QuestionnaireResponse.rs"))
        r = await qr_reader.post(f"{FHIR}/QuestionnaireResponse", json={"resourceType": "QuestionnaireResponse"})
        assert r.status_code == 403
        assert 'scope="system/QuestionnaireResponse.c"' in r.headers["www-authenticate"]
        r = await goals_only.get(f"{FHIR}/QuestionnaireResponse")
        assert r.status_code == 403
        assert 'scope="system/QuestionnaireResponse.s"' in r.headers["www-authenticate"]


async def test_erasing_a_client_removes_the_export_files_that_held_it(db):
    from service.db import make_engine
    from service.purge import purge_client

    async with Api.start(db, **FAST) as api, runner(db):
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        erased = await create(c, "clients")
        status = await kick_off(c)
        manifest = await wait_for_manifest(c, status)
        engine = make_engine(db.owner_url, db.settings(), pool=False)
        async with engine.begin() as conn:
            out = await purge_client(conn, erased["id"], "test")
        await engine.dispose()
        assert out["removed"]["bulk_export_files"] == len(manifest["output"])
        assert (await c.get(local(status))).status_code == 404
        assert (await c.get(local(manifest["output"][0]["url"]))).status_code == 404
        assert await db.fetchval("SELECT count(*) FROM bulk_export_chunks") == 0
