"""Erasure on request: `strengths-api purge-client ID` removes the client and leaves only ids behind."""

from __future__ import annotations

import uuid

import pytest

from service import cli
from tests.support.changes import drain
from tests.support.factories import COLLECTIONS, create


async def test_purge_client_erases_records_history_ids_and_replies(api, monkeypatch, capsys):
    org = await api.org("A")
    c = api.client(await api.token(org, "system/*.cruds"))
    client = await create(c, "clients", identifiers=[{"system": "urn:mrn", "value": "MRN-1"}])
    cid = client["id"]
    made = {"clients": [cid]}
    for name in COLLECTIONS:
        if name != "clients":
            made[name] = [(await create(c, name, client_id=cid))["id"]]
    await c.patch(f"/v1/strengths/{made['strengths'][0]}", json={"status": "confirmed", "evidence": ["Paid the rent"]})
    replay = await c.post("/v1/protective-factors", headers={"Idempotency-Key": "k-" + uuid.uuid4().hex},
                          json={"client_id": cid, "category": "routine", "description": "Walks the dog daily"})
    assert replay.status_code == 201
    other = await create(c, "strengths")  # another client of the same organization: untouched
    before_changes = await api.db.fetchval("SELECT count(*) FROM changes")
    assert await api.db.fetchval("SELECT count(*) FROM idempotency_keys WHERE $1 = ANY(client_ids)",
                                 uuid.UUID(cid)) == 1

    monkeypatch.setenv("DATABASE_URL", api.db.app_url)
    monkeypatch.setenv("MIGRATION_DATABASE_URL", api.db.owner_url)
    await _in_thread(lambda: cli.main(["purge-client", cid, "--by", "dpo@clinic.example"]))
    out = capsys.readouterr().out
    assert '"purged_by": "dpo@clinic.example"' in out

    u = uuid.UUID(cid)
    for table in ("clients",):
        assert await api.db.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1", u) == 0
    for table in ("strengths", "protective_factors", "exceptions", "goals", "milestones", "outcome_markers",
                  "measurements", "strength_uses", "experiments", "safety_alerts", "history", "external_ids"):
        assert await api.db.fetchval(f"SELECT count(*) FROM {table} WHERE client_id = $1", u) == 0, table
    assert await api.db.fetchval("SELECT count(*) FROM history WHERE data::text LIKE '%MRN-1%'") == 0
    assert await api.db.fetchval("SELECT count(*) FROM idempotency_keys WHERE $1 = ANY(client_ids)", u) == 0
    # one deleted change per removed record, holding ids and versions only
    deleted = await api.db.fetch(
        "SELECT collection, record_id, action FROM changes WHERE client_id = $1 AND action = 'deleted'", u)
    removed_ids = {str(r["record_id"]) for r in deleted}
    for name, ids in made.items():
        assert set(ids) <= removed_ids, name
    assert await api.db.fetchval("SELECT count(*) FROM changes") == before_changes + len(deleted)
    # the feed delivers the deletions to a consumer
    await drain(c, None, want=lambda seen: {e["id"] for e in seen if e["action"] == "deleted"} >= removed_ids)
    # the record answers 404 now, and the other client's strength is still there
    assert (await c.get(f"/v1/clients/{cid}")).status_code == 404
    assert (await c.get(f"/v1/strengths/{other['id']}")).status_code == 200
    # who purged, and when
    event = (await api.db.fetch("SELECT * FROM audit_events WHERE action = 'purge'"))
    assert len(event) == 1
    assert event[0]["subject"] == "dpo@clinic.example"
    assert event[0]["resource_ids"] == [u]
    assert event[0]["org_id"] == org.id
    assert event[0]["at"] is not None


async def test_purge_of_an_unknown_client_fails_cleanly(api, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", api.db.app_url)
    monkeypatch.setenv("MIGRATION_DATABASE_URL", api.db.owner_url)
    with pytest.raises(SystemExit, match="No client"):
        await _in_thread(lambda: cli.main(["purge-client", str(uuid.uuid4())]))


async def _in_thread(fn):
    import asyncio

    return await asyncio.to_thread(fn)
