"""Operating a webhook subscription: ping, redelivery with the same webhook-id, secret rotation (both secrets
verify for 24 h, then only the new one), each refused for another organization and without its scope."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.factories import create
from tests.support.harness import Api
from tests.support.webhooks import FAST, Receiver, eventually, subscribe

ALL = "system/*.cruds"
SUBS = "/v1/webhook-subscriptions"


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


async def delivered(c, sub_id: str, delivery_id: str, attempts: int = 1) -> dict:
    async def row():
        rows = (await c.get(f"{SUBS}/{sub_id}/deliveries")).json()["data"]
        return next((r for r in rows if r["id"] == delivery_id and r["status"] == "delivered"
                     and r["attempts"] >= attempts), None)

    for _ in range(400):
        if found := await row():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("not delivered")


async def test_ping_is_delivered_signed_and_logged(db, receiver):
    async with Api.start(db, **FAST) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, receiver.url, ["goal.created"])  # ping is sent whatever the events
        r = await c.post(f"{SUBS}/{sub['id']}/ping")
        assert r.status_code == 202, r.text
        queued = r.json()
        assert queued["event"] == "subscription.ping"
        assert queued["status"] == "pending"
        await eventually(lambda: receiver.ok())
        (event,) = receiver.verified(sub["secret"])
        assert event["type"] == "subscription.ping"
        assert event["data"] == {"type": "subscription", "id": sub["id"], "action": "ping", "version": 1,
                                 "org_id": str(org.id)}
        assert receiver.received[0].headers["webhook-id"] == queued["id"]
        row = await delivered(c, sub["id"], queued["id"])
        assert row["last_status_code"] == 204


async def test_redelivery_keeps_its_webhook_id_and_body(db, receiver):
    async with Api.start(db, **FAST) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, receiver.url, ["strength.created"])
        await create(c, "strengths")
        await eventually(lambda: receiver.ok())
        first = (await c.get(f"{SUBS}/{sub['id']}/deliveries")).json()["data"][0]
        await delivered(c, sub["id"], first["id"])
        r = await c.post(f"{SUBS}/{sub['id']}/deliveries/{first['id']}/redeliver")
        assert r.status_code == 202, r.text
        assert r.json()["id"] == first["id"]
        assert r.json()["status"] == "pending"
        await eventually(lambda: len(receiver.ok()) == 2)
        one, two = receiver.received
        assert one.headers["webhook-id"] == two.headers["webhook-id"] == first["id"]
        assert one.body == two.body
        assert receiver.verified(sub["secret"])[0] == receiver.verified(sub["secret"])[1]
        row = await delivered(c, sub["id"], first["id"], attempts=2)
        assert row["attempts"] == 2
        assert len((await c.get(f"{SUBS}/{sub['id']}/deliveries")).json()["data"]) == 1  # the same delivery


async def test_rotated_secret_both_verify_for_24_hours_then_only_the_new_one(db, receiver):
    async with Api.start(db, **FAST) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, receiver.url, ["strength.created"])
        old = sub["secret"]
        r = await c.post(f"{SUBS}/{sub['id']}/rotate-secret")
        assert r.status_code == 200, r.text
        rotated = r.json()
        new = rotated["secret"]
        assert new.startswith("whsec_")
        assert new != old
        assert rotated["version"] == 2
        assert r.headers["etag"] == 'W/"2"'
        expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
        assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=24)
        read = await c.get(f"{SUBS}/{sub['id']}")
        assert new not in read.text
        assert old not in read.text
        assert read.json()["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]

        await create(c, "strengths")
        await eventually(lambda: receiver.ok())
        assert len(receiver.received[0].headers["webhook-signature"].split(" ")) == 2
        assert receiver.verified(old)[0]["type"] == "strength.created"  # a receiver not yet switched
        assert receiver.verified(new)[0]["type"] == "strength.created"  # a receiver already switched

        # A day later (the dispatcher's clock moved forward): only the new secret signs.
        dispatcher = api.app.state.webhook_dispatcher
        dispatcher.clock = lambda: datetime.now(UTC) + timedelta(hours=24, seconds=1)
        await create(c, "strengths")
        await eventually(lambda: len(receiver.ok()) == 2)
        later = receiver.received[1]
        assert len(later.headers["webhook-signature"].split(" ")) == 1
        assert Webhook(new).verify(later.body, later.headers)["type"] == "strength.created"
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(later.body, later.headers)


async def test_a_disabled_subscription_is_not_pinged_nor_redelivered(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    sub = await subscribe(c, "https://93.184.216.34/hook", ["strength.created"])
    await create(c, "strengths")
    delivery = (await c.get(f"{SUBS}/{sub['id']}/deliveries")).json()["data"][0]
    await c.patch(f"{SUBS}/{sub['id']}", json={"active": False})
    assert (await c.post(f"{SUBS}/{sub['id']}/ping")).status_code == 409
    assert (await c.post(f"{SUBS}/{sub['id']}/deliveries/{delivery['id']}/redeliver")).status_code == 409
    await c.delete(f"{SUBS}/{sub['id']}")
    assert (await c.post(f"{SUBS}/{sub['id']}/ping")).status_code == 410
    assert (await c.post(f"{SUBS}/{sub['id']}/rotate-secret")).status_code == 410


async def test_an_unknown_delivery_or_one_of_another_subscription_is_404(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    one = await subscribe(c, "https://93.184.216.34/hook", ["strength.created"])
    other = await subscribe(c, "https://93.184.216.34/other", ["strength.created"])
    await create(c, "strengths")
    delivery = (await c.get(f"{SUBS}/{one['id']}/deliveries")).json()["data"][0]
    r = await c.post(f"{SUBS}/{other['id']}/deliveries/{delivery['id']}/redeliver")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = await c.post(f"{SUBS}/{one['id']}/deliveries/00000000-0000-0000-0000-000000000000/redeliver")
    assert r.status_code == 404
    assert (await c.post(f"{SUBS}/{one['id']}/deliveries/not-a-uuid/redeliver")).status_code == 422


async def _operations(c, sub_id: str, delivery_id: str) -> list:
    return [
        await c.post(f"{SUBS}/{sub_id}/ping"),
        await c.post(f"{SUBS}/{sub_id}/deliveries/{delivery_id}/redeliver"),
        await c.post(f"{SUBS}/{sub_id}/rotate-secret"),
    ]


async def test_another_organization_gets_404_and_changes_nothing(api):
    org_a, org_b = await api.org("A"), await api.org("B")
    a = api.client(await api.token(org_a, ALL))
    b = api.client(await api.token(org_b, ALL))
    sub = await subscribe(a, "https://93.184.216.34/hook", ["strength.created"])
    await create(a, "strengths")
    delivery = (await a.get(f"{SUBS}/{sub['id']}/deliveries")).json()["data"][0]
    random_id = "00000000-0000-0000-0000-00000000abcd"
    theirs = await _operations(b, sub["id"], delivery["id"])
    missing = await _operations(b, random_id, random_id)
    for got, absent in zip(theirs, missing, strict=True):
        assert got.status_code == absent.status_code == 404
        assert got.json()["title"] == absent.json()["title"]
    after = (await a.get(f"{SUBS}/{sub['id']}")).json()
    assert after["version"] == 1
    assert after["previous_secret_expires_at"] is None
    assert len((await a.get(f"{SUBS}/{sub['id']}/deliveries")).json()["data"]) == 1
    assert await api.db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE redelivered_at IS NOT NULL") == 0


async def test_each_needs_webhook_update_and_a_system_token(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    client = await create(c, "clients")
    sub = await subscribe(c, "https://93.184.216.34/hook", ["client.created", "strength.created"])
    await create(c, "strengths", client_id=client["id"])
    delivery = (await c.get(f"{SUBS}/{sub['id']}/deliveries")).json()["data"][0]
    reader = api.client(await api.token(org, "system/Webhook.crds"))
    for r in await _operations(reader, sub["id"], delivery["id"]):
        assert r.status_code == 403, r.text
        assert 'scope="system/Webhook.u"' in r.headers["www-authenticate"]
    patient = api.client(await api.token(org, "patient/*.cruds", patient=client["id"]))
    for r in await _operations(patient, sub["id"], delivery["id"]):
        assert r.status_code == 403, r.text
    anonymous = api.client(None)
    for r in await _operations(anonymous, sub["id"], delivery["id"]):
        assert r.status_code == 401
    after = (await c.get(f"{SUBS}/{sub['id']}")).json()
    assert after["version"] == 1
    assert len((await c.get(f"{SUBS}/{sub['id']}/deliveries")).json()["data"]) == 1  # no ping was queued


async def test_rotation_is_idempotent_with_a_key(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    sub = await subscribe(c, "https://93.184.216.34/hook", ["strength.created"])
    first = await c.post(f"{SUBS}/{sub['id']}/rotate-secret", headers={"Idempotency-Key": "rotate-1"})
    again = await c.post(f"{SUBS}/{sub['id']}/rotate-secret", headers={"Idempotency-Key": "rotate-1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["secret"] == first.json()["secret"]
    assert (await c.get(f"{SUBS}/{sub['id']}")).json()["version"] == 2
