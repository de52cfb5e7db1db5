"""The rows every request or event appends (audit events, webhook events and their deliveries) get time-ordered ids
(RFC 9562 version 7, migration 0015): new rows land on the right edge of their primary key's index, not on a random
leaf (bench/idorder.py measures what that saves). The service's own (``types.uuid7s``: the records a batch makes,
the alerts it opens) are version 7 too, and whole UUIDs."""

from __future__ import annotations

import copy
import pickle
import time
import uuid
from datetime import datetime

from service.collections.types import uuid7, uuid7s
from service.ops import migrate
from tests.support.factories import create
from tests.support.harness import APP_ROLE, Api
from tests.support.webhooks import Receiver, subscribe


def milliseconds(ident: uuid.UUID) -> int:
    return ident.int >> 80


def time_ordered(ids: list[uuid.UUID]) -> bool:
    return all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids) and \
        [milliseconds(i) for i in ids] == sorted(milliseconds(i) for i in ids)


async def test_audit_event_ids_are_version_7_in_the_order_written(api):
    org = await api.org()
    c = api.client(await api.token(org, "system/*.cruds"))
    strength = await create(c, "strengths")
    for _ in range(3):
        assert (await c.get(f"/v1/strengths/{strength['id']}")).status_code == 200
    auditor = api.client(await api.token(org, "system/AuditEvent.s"))
    written = (await auditor.get("/v1/audit-events?limit=500")).json()["data"]  # in the order written
    ids = [uuid.UUID(e["id"]) for e in written]
    assert len(ids) >= 5
    assert time_ordered(ids)
    for event, ident in zip(written, ids, strict=True):  # the id's clock is the row's own (`at`, clock_timestamp())
        assert abs(datetime.fromisoformat(event["at"]).timestamp() * 1000 - milliseconds(ident)) < 1000


async def test_webhook_event_and_delivery_ids_are_version_7(db):
    receiver = Receiver().start()
    try:
        async with Api.start(db, webhooks_allow_private_targets=True) as api:  # no dispatcher: the rows stay
            org = await api.org()
            c = api.client(await api.token(org, "system/*.cruds"))
            for _ in range(2):
                await subscribe(c, receiver.url, ["strength.created"])
            for _ in range(3):
                await create(c, "strengths")
            events = [r["id"] for r in await db.fetch("SELECT id FROM webhook_outbox ORDER BY created_at, id")]
            deliveries = [r["id"] for r in await db.fetch("SELECT id FROM webhook_deliveries ORDER BY created_at, id")]
    finally:
        receiver.stop()
    assert (len(events), len(deliveries)) == (3, 6)
    assert time_ordered(events)
    assert time_ordered(deliveries)


async def test_the_migration_goes_back_to_random_ids(db):
    migrate.downgrade(db.owner_url, "0014", app_role=APP_ROLE)
    try:
        default = await db.fetchval("SELECT column_default FROM information_schema.columns "
                                    "WHERE table_name = 'audit_events' AND column_name = 'id'")
        assert default == "gen_random_uuid()"
        assert await db.fetchval("SELECT to_regproc('uuid_time_ordered')") is None
    finally:
        migrate.upgrade(db.owner_url, app_role=APP_ROLE)
    assert uuid.UUID(str(await db.fetchval("SELECT uuid_time_ordered()"))).version == 7


def test_the_services_ids_are_whole_version_7_uuids() -> None:
    """``uuid7s`` sets a UUID's attributes itself (no ``UUID.__init__``): each must be the UUID its text parses to,
    in every way a UUID is used (equal, hashed, ordered, copied, pickled), version 7, of this millisecond."""
    before = time.time_ns() // 1_000_000
    made = [*uuid7s(500), uuid7()]
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == len(made)
    for ident in made:
        parsed = uuid.UUID(str(ident))
        assert (ident == parsed, hash(ident) == hash(parsed), ident.int == parsed.int) == (True, True, True)
        assert (ident.version, ident.variant, ident.is_safe) == (7, uuid.RFC_4122, uuid.SafeUUID.unknown)
        assert copy.copy(ident) == pickle.loads(pickle.dumps(ident)) == parsed
        assert before <= milliseconds(ident) <= after
    assert sorted(made[:500], key=str) == sorted(made[:500])  # ordered as their text is


async def test_a_batchs_records_get_version_7_ids_of_when_they_were_made(api):
    org = await api.org()
    c = api.client(await api.token(org, "system/*.cruds"))
    marker = await create(c, "outcome-markers", min=0, max=10, name="Mood", kind="mood", unit="{score}")
    items = [{"client_id": marker["client_id"], "marker_id": marker["id"], "value": i,
              "observed_at": "2026-11-20T08:00:00Z"} for i in range(5)]
    before = time.time() * 1000
    response = await c.post("/v1/measurements/batch", json={"measurements": items})
    assert response.status_code == 200, response.text
    ids = [uuid.UUID(r["id"]) for r in response.json()["results"]]
    assert len(set(ids)) == 5
    assert time_ordered(ids)
    for ident in ids:
        assert abs(milliseconds(ident) - before) < 60_000
        assert (await c.get(f"/v1/measurements/{ident}")).json()["id"] == str(ident)
