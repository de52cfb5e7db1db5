"""The rows every request or event appends (audit events, webhook events and their deliveries) get time-ordered ids
(RFC 9562 version 7, migration 0015): new rows land on the right edge of their primary key's index, not on a random
leaf (bench/idorder.py measures what that saves)."""

from __future__ import annotations

import uuid
from datetime import datetime

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
