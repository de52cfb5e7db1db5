"""Webhooks: signed deliveries verified by the third-party standardwebhooks package, retries with a stable
webhook-id, safety alerts, tenant isolation, SSRF refusals and the delivery log."""

from __future__ import annotations

import asyncio

import pytest

from service.webhooks.signing import sign
from tests.support.factories import NOW, create
from tests.support.harness import APP_ROLE, Api
from tests.support.webhooks import FAST, Receiver, eventually, subscribe

ALL = "system/*.cruds"


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


async def test_signature_matches_the_spec_example():
    # The Standard Webhooks spec's test vector (libraries/python tests).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_creating_a_strength_delivers_a_verified_thin_event(db, receiver):
    async with Api.start(db, **FAST) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, receiver.url, ["strength.created", "safety_alert.opened"])
        assert sub["secret"].startswith("whsec_")
        assert sub["active"] is True
        read = await c.get(f"/v1/webhook-subscriptions/{sub['id']}")
        assert "secret" not in read.json()
        assert sub["secret"] not in read.text
        listed = await c.get("/v1/webhook-subscriptions")
        assert sub["secret"] not in listed.text

        strength = await create(c, "strengths")
        await eventually(lambda: receiver.ok())
        (event,) = receiver.verified(sub["secret"])
        assert event["type"] == "strength.created"
        assert event["data"] == {"type": "strength", "id": strength["id"], "action": "created", "version": 1,
                                 "org_id": str(org.id), "client_id": strength["client_id"]}
        assert strength["label"] not in receiver.received[0].body.decode()  # thin: no client data but its id

        async def logged():
            return (await c.get(f"/v1/webhook-subscriptions/{sub['id']}/deliveries")).json()["data"]

        rows = await logged()
        for _ in range(100):
            if rows and rows[0]["status"] == "delivered":
                break
            await asyncio.sleep(0.05)
            rows = await logged()
        assert [(r["event"], r["status"], r["attempts"], r["last_status_code"]) for r in rows] == \
            [("strength.created", "delivered", 1, 204)]
        assert rows[0]["id"] == receiver.received[0].headers["webhook-id"]
        # Not subscribed: strength.updated writes nothing to the outbox.
        await c.patch(f"/v1/strengths/{strength['id']}", json={"status": "confirmed", "evidence": ["Paid the rent"]})
        assert await db.fetchval("SELECT count(*) FROM webhook_outbox WHERE event = 'strength.updated'") == 0


async def test_an_organization_without_subscriptions_writes_no_outbox_rows(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    await create(c, "strengths")
    assert await db_count(api, "webhook_outbox") == 0
    assert await db_count(api, "webhook_deliveries") == 0


async def db_count(api, table: str) -> int:
    return int(await api.db.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 - test constant


async def test_phq9_item_9_delivers_safety_alert_opened(db, receiver):
    async with Api.start(db, **FAST) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, receiver.url, ["safety_alert.opened"])
        marker = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9")
        r = await c.post("/v1/measurements", json={"client_id": marker["client_id"], "marker_id": marker["id"],
                                                   "observed_at": NOW, "items": [0, 0, 0, 0, 0, 0, 0, 0, 1]})
        alert = r.json()["safety_alert"]
        await eventually(lambda: receiver.ok())
        (event,) = receiver.verified(sub["secret"])
        assert event["type"] == "safety_alert.opened"
        assert event["data"] == {"type": "safety_alert", "id": alert["id"], "action": "opened", "version": 1,
                                 "org_id": str(org.id), "client_id": marker["client_id"]}


async def test_a_failing_receiver_gets_the_retry_with_the_same_webhook_id(db, receiver):
    receiver.status = 500
    async with Api.start(db, **FAST) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, receiver.url, ["strength.created"])
        await create(c, "strengths")
        await eventually(lambda: len(receiver.received) >= 2)
        receiver.status = 200
        await eventually(lambda: receiver.ok())
        events = receiver.verified(sub["secret"])
        assert {e["type"] for e in events} == {"strength.created"}
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
        assert len({r.body for r in receiver.received}) == 1
        await asyncio.sleep(0.3)
        assert len(receiver.ok()) == 1  # delivered once, then no more attempts
        rows = (await c.get(f"/v1/webhook-subscriptions/{sub['id']}/deliveries")).json()["data"]
        assert rows[0]["status"] == "delivered"
        assert rows[0]["attempts"] == len(receiver.received)


async def test_persistent_failure_disables_the_subscription_and_says_so(db, receiver):
    watcher = Receiver().start()
    try:
        receiver.status = 503
        async with Api.start(db, **FAST, webhooks_retry_window_seconds=0.5) as api:
            org = await api.org()
            c = api.client(await api.token(org, ALL))
            failing = await subscribe(c, receiver.url, ["strength.created"])
            watching = await subscribe(c, watcher.url, ["subscription.disabled"])
            await create(c, "strengths")
            await eventually(lambda: watcher.ok())
            (event,) = watcher.verified(watching["secret"])
            assert event["type"] == "subscription.disabled"
            assert event["data"]["id"] == failing["id"]
            assert event["data"]["type"] == "subscription"
            got = (await c.get(f"/v1/webhook-subscriptions/{failing['id']}")).json()
            assert got["active"] is False
            assert "retries exhausted" in got["disabled_reason"]
            rows = (await c.get(f"/v1/webhook-subscriptions/{failing['id']}/deliveries")).json()["data"]
            assert rows[0]["status"] == "failed"
            assert rows[0]["last_status_code"] == 503
            # Re-enabled by PATCH active: true.
            again = await c.patch(f"/v1/webhook-subscriptions/{failing['id']}", json={"active": True})
            assert again.json()["active"] is True
            assert again.json()["disabled_reason"] is None
    finally:
        watcher.stop()


async def test_410_from_the_receiver_disables_the_subscription(db, receiver):
    receiver.status = 410
    async with Api.start(db, **FAST) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, receiver.url, ["strength.created"])
        await create(c, "strengths")

        async def disabled():
            return (await c.get(f"/v1/webhook-subscriptions/{sub['id']}")).json()["active"] is False

        for _ in range(200):
            if await disabled():
                break
            await asyncio.sleep(0.05)
        assert await disabled()
        await create(c, "strengths")  # an inactive subscription gets nothing more
        await asyncio.sleep(0.3)
        assert len(receiver.received) == 1


async def test_an_organization_never_receives_another_organizations_events(db):
    mine, theirs = Receiver().start(), Receiver().start()
    try:
        async with Api.start(db, **FAST) as api:
            org_a, org_b = await api.org("A"), await api.org("B")
            a = api.client(await api.token(org_a, ALL))
            b = api.client(await api.token(org_b, ALL))
            sub_a = await subscribe(a, mine.url, ["strength.created", "client.created"])
            sub_b = await subscribe(b, theirs.url, ["strength.created", "client.created"])
            made_a = await create(a, "strengths")
            made_b = await create(b, "strengths")
            await eventually(lambda: len(mine.ok()) == 2 and len(theirs.ok()) == 2)
            await asyncio.sleep(0.3)
            got_a = mine.verified(sub_a["secret"])
            got_b = theirs.verified(sub_b["secret"])
            assert {e["data"]["org_id"] for e in got_a} == {str(org_a.id)}
            assert {e["data"]["org_id"] for e in got_b} == {str(org_b.id)}
            assert {e["data"]["id"] for e in got_a} == {made_a["id"], made_a["client_id"]}
            assert {e["data"]["id"] for e in got_b} == {made_b["id"], made_b["client_id"]}
            # B cannot see A's subscription or its delivery log.
            assert (await b.get(f"/v1/webhook-subscriptions/{sub_a['id']}")).status_code == 404
            assert (await b.get(f"/v1/webhook-subscriptions/{sub_a['id']}/deliveries")).status_code == 404
            assert (await b.patch(f"/v1/webhook-subscriptions/{sub_a['id']}", json={"active": False})).status_code \
                == 404
            assert sub_a["id"] not in (await b.get("/v1/webhook-subscriptions")).text
    finally:
        mine.stop()
        theirs.stop()


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://169.254.169.254/latest/meta-data", "https://10.1.2.3/hook",
    "https://172.16.0.1/hook", "https://192.168.1.1/hook", "https://[::1]/hook", "https://[fd00::1]/hook",
    "https://localhost/hook", "https://0/hook", "https://0.0.0.0/hook", "https://2130706433/hook",
    "https://0x7f.1/hook", "https://[::ffff:127.0.0.1]/hook", "http://93.184.216.34/hook", "ftp://93.184.216.34/hook", "https://user:pw@93.184.216.34/",
])
async def test_private_loopback_and_plain_http_targets_are_refused(api, url):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    r = await c.post("/v1/webhook-subscriptions", json={"url": url, "events": ["strength.created"]})
    assert r.status_code == 422, (url, r.text)
    assert r.json()["errors"][0]["field"] == "url"


async def test_a_public_https_target_and_known_events_are_accepted(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    ok = await c.post("/v1/webhook-subscriptions", json={"url": "https://93.184.216.34/hook",
                                                         "events": ["goal.updated", "subscription.disabled"]})
    assert ok.status_code == 201, ok.text
    bad = await c.post("/v1/webhook-subscriptions", json={"url": "https://93.184.216.34/hook",
                                                          "events": ["goal.exploded"]})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "events.0"
    to_private = await c.patch(f"/v1/webhook-subscriptions/{ok.json()['id']}", json={"url": "https://10.0.0.1/"})
    assert to_private.status_code == 422


@pytest.mark.parametrize("field", ["url", "events", "active"])
async def test_a_null_in_a_patch_is_refused_and_changes_nothing(api, field):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    sub = (await c.post("/v1/webhook-subscriptions", json={"url": "https://93.184.216.34/hook",
                                                           "events": ["goal.updated"]})).json()
    r = await c.patch(f"/v1/webhook-subscriptions/{sub['id']}", json={field: None})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
    after = (await c.get(f"/v1/webhook-subscriptions/{sub['id']}")).json()
    assert after == {k: v for k, v in sub.items() if k != "secret"}


async def test_the_address_is_checked_again_at_delivery(db, receiver):
    """A target that became private after it was accepted (DNS rebinding) is refused when delivering."""
    async with Api.start(db, **{**FAST, "webhooks_allow_private_targets": False}) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, "https://93.184.216.34/hook", ["strength.created"])
        # As if the name now resolved to loopback: point the stored URL at the local receiver.
        await db.fetch("UPDATE webhook_subscriptions SET url = $1 WHERE id = $2",
                       f"https://127.0.0.1:{receiver.port}/hook", __import__("uuid").UUID(sub["id"]))
        await create(c, "strengths")

        async def attempted():
            rows = (await c.get(f"/v1/webhook-subscriptions/{sub['id']}/deliveries")).json()["data"]
            return rows and rows[0]["attempts"] >= 1 and rows[0]

        row = None
        for _ in range(200):
            row = await attempted()
            if row:
                break
            await asyncio.sleep(0.05)
        assert row
        assert "non-public" in row["last_error"]
        assert receiver.received == []


async def test_scopes_and_patient_tokens(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    client = await create(c, "clients")
    sub = (await c.post("/v1/webhook-subscriptions", json={"url": "https://93.184.216.34/hook",
                                                           "events": ["strength.created"]})).json()
    reader = api.client(await api.token(org, "system/Webhook.rs"))
    assert (await reader.get(f"/v1/webhook-subscriptions/{sub['id']}")).status_code == 200
    assert (await reader.get(f"/v1/webhook-subscriptions/{sub['id']}/deliveries")).status_code == 200
    refused = await reader.post("/v1/webhook-subscriptions", json={"url": "https://93.184.216.34/hook",
                                                                    "events": ["strength.created"]})
    assert refused.status_code == 403
    assert 'scope="system/Webhook.c"' in refused.headers["www-authenticate"]
    patient = api.client(await api.token(org, "patient/*.cruds", patient=client["id"]))
    r = await patient.get("/v1/webhook-subscriptions")
    assert r.status_code == 403, r.text


async def test_deleted_subscription_answers_410_and_its_log_too(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    sub = (await c.post("/v1/webhook-subscriptions", json={"url": "https://93.184.216.34/hook",
                                                           "events": ["strength.created"]})).json()
    stale = await c.delete(f"/v1/webhook-subscriptions/{sub['id']}", headers={"If-Match": 'W/"9"'})
    assert stale.status_code == 412
    assert (await c.delete(f"/v1/webhook-subscriptions/{sub['id']}")).status_code == 204
    assert (await c.get(f"/v1/webhook-subscriptions/{sub['id']}")).status_code == 410
    assert (await c.get(f"/v1/webhook-subscriptions/{sub['id']}/deliveries")).status_code == 410
    await create(c, "strengths")
    assert await db_count(api, "webhook_outbox") == 0


async def test_a_rolled_back_change_leaves_no_event(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    await c.post("/v1/webhook-subscriptions", json={"url": "https://93.184.216.34/hook", "events": ["goal.created"]})
    client = await create(c, "clients")
    r = await c.post("/v1/goals", json={"client_id": client["id"], "description": "x",
                                        "strength_ids": ["00000000-0000-0000-0000-000000000000"]})
    assert r.status_code == 422
    assert await db_count(api, "webhook_outbox") == 0


async def test_row_level_security_hides_other_organizations_webhook_rows(db):
    """The service role sees webhook rows of its tenant only; the claim function hands out ids, not payloads."""
    async with Api.start(db, webhooks_dispatcher=False) as api:
        org_a, org_b = await api.org("A"), await api.org("B")
        a = api.client(await api.token(org_a, ALL))
        await subscribe(a, "https://93.184.216.34/hook", ["strength.created"])
        await create(a, "strengths")
    conn = await db.connect(APP_ROLE)
    try:
        for table in ("webhook_subscriptions", "webhook_outbox", "webhook_deliveries"):
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.org_id', $1, true)", str(org_b.id))
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0  # noqa: S608 - constant
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.org_id', $1, true)", str(org_a.id))
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1  # noqa: S608 - constant
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0  # noqa: S608 - no tenant, no rows
        claimed = await conn.fetch("SELECT * FROM webhook_claim(10, 60)")
        assert [tuple(r.keys()) for r in claimed] == [("claimed_org", "claimed_id", "claimed_token")]
        assert claimed[0]["claimed_org"] == org_a.id
        assert await conn.fetch("SELECT * FROM webhook_claim(10, 60)") == []  # leased: not claimed twice
    finally:
        await conn.close()


# No second attempt while a test looks at the first: FAST's 0.3 s cap on the retry delay would otherwise win over
# any base (full jitter: a retry within 0-0.3 s, before a busy machine's test has read its first attempt).
NO_RETRY_YET = {"webhooks_retry_base_seconds": 60, "webhooks_retry_max_delay_seconds": 60}


async def last_delivery(c, sub_id: str, attempts: int = 1) -> dict:
    for _ in range(200):
        rows = (await c.get(f"/v1/webhook-subscriptions/{sub_id}/deliveries")).json()["data"]
        if rows and rows[0]["attempts"] >= attempts:
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no attempt recorded")


async def test_redirects_are_failures_and_not_followed(db, receiver):
    receiver.status = 307  # with no Location: a redirect is never followed, whatever it says
    async with Api.start(db, **{**FAST, **NO_RETRY_YET}) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, receiver.url, ["strength.created"])
        await create(c, "strengths")
        row = await last_delivery(c, sub["id"])
        assert row["status"] == "pending"
        assert row["last_status_code"] == 307
        assert len(receiver.received) == 1


async def test_a_slow_receiver_times_out_and_is_retried(db, receiver):
    receiver.delay = 1.5
    async with Api.start(db, **{**FAST, "webhooks_timeout_seconds": 0.3, **NO_RETRY_YET}) as api:
        org = await api.org()
        c = api.client(await api.token(org, ALL))
        sub = await subscribe(c, receiver.url, ["strength.created"])
        await create(c, "strengths")
        row = await last_delivery(c, sub["id"])
        assert row["status"] == "pending"
        assert "Timeout" in row["last_error"]
        assert row["last_status_code"] is None


async def test_creating_a_subscription_is_idempotent_with_a_key(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    body = {"url": "https://93.184.216.34/hook", "events": ["goal.created"]}
    first = await c.post("/v1/webhook-subscriptions", json=body, headers={"Idempotency-Key": "sub-1"})
    again = await c.post("/v1/webhook-subscriptions", json=body, headers={"Idempotency-Key": "sub-1"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert len((await c.get("/v1/webhook-subscriptions")).json()["data"]) == 1
