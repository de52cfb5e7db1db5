"""The batch ingest stores, row for row, what POST /v1/measurements stores for the same items (measurements,
safety alerts, versions, change feed, webhook outbox and deliveries), and its audit row commits with its writes or
not at all (the batch runs on ``uow.write_unit_of_work``: the audit INSERT goes with the COMMIT). The one difference:
a batch-created measurement's first version is its own row (``first_version_by``), where a single create writes it
to the history; both read the same from ``record_versions``."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from tests.support.audit import events
from tests.support.factories import create
from tests.support.harness import ALL, Api
from tests.support.webhooks import subscribe

EVENTS = ["measurement.created", "safety_alert.created", "safety_alert.opened"]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WRITTEN = "('measurements', 'safety-alerts')"  # the collections a batch writes
NOW = {"created_at", "updated_at", "opened_at", "changed_at", "at"}  # set by the database when written


@pytest.fixture
async def api(db: Any) -> Any:
    """The app, with webhook targets on loopback allowed (no dispatcher runs: nothing is sent)."""
    async with Api.start(db, webhooks_allow_private_targets=True) as app:
        yield app


async def _org(api: Any, name: str) -> tuple[Any, Any, dict[str, Any], dict[str, Any], dict[str, Any]]:
    org = await api.org(name)
    c = api.client(await api.token(org, ALL))
    mood = await create(c, "outcome-markers", min=0, max=10, name="Mood", kind="mood", unit="{score}")
    phq = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9",
                       client_id=mood["client_id"])
    sub = await subscribe(c, "http://127.0.0.1:9/hook", EVENTS)
    return org, c, mood, phq, sub


def _items(mood: dict[str, Any], phq: dict[str, Any]) -> list[dict[str, Any]]:
    """Three items that are stored: an offset and microseconds kept, a float value, an instrument that opens an
    alert (scored by the service)."""
    cid = mood["client_id"]
    return [
        {"client_id": cid, "marker_id": mood["id"], "value": 4, "observed_at": "2026-11-20T08:00:00.250000+09:00",
         "source": "moodapp", "external_id": "a", "note": "n"},
        {"client_id": cid, "marker_id": mood["id"], "value": 2.5, "observed_at": "2026-11-20T08:00:00-03:00"},
        {"client_id": cid, "marker_id": phq["id"], "observed_at": "2026-11-20T08:00:00Z",
         "items": [3, 3, 3, 3, 3, 3, 2, 0, 0], "source": "moodapp", "external_id": "c"},
    ]


async def _stored(api: Any, org: Any, names: dict[str, str]) -> dict[str, list[Any]]:
    """The organization's rows, each as JSON with its ids named (``names``: the known ones; the measurements by
    value, the alert) and the times the database set left out; each table's rows sorted."""
    tables = {
        "measurements": "SELECT to_jsonb(t) - 'first_version_by' FROM measurements t WHERE org_id = $1",
        "safety_alerts": "SELECT to_jsonb(t) FROM safety_alerts t WHERE org_id = $1",
        "versions": f"SELECT to_jsonb(t) FROM record_versions t WHERE org_id = $1 AND collection IN {WRITTEN}",
        "changes": f"SELECT to_jsonb(t) - 'seq' - 'txid' FROM changes t WHERE org_id = $1 AND collection IN {WRITTEN}",
        "outbox": "SELECT to_jsonb(t) - 'id' - 'seq' FROM webhook_outbox t WHERE org_id = $1",
        "deliveries": "SELECT jsonb_build_object('event', event, 'subscription_id', subscription_id) "
                      "FROM webhook_deliveries WHERE org_id = $1",
    }
    measurements = sorted((json.loads(r[0]) for r in await api.db.fetch(tables["measurements"], org.id)),
                          key=lambda m: m["value"])
    names.update({m["id"]: f"measurement-{i}" for i, m in enumerate(measurements)})
    names.update({a["id"]: f"alert-{i}" for i, a in enumerate(
        json.loads(r[0]) for r in await api.db.fetch(tables["safety_alerts"], org.id))})

    def named(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: named(v, k) for k, v in value.items() if k not in NOW}
        if isinstance(value, list):
            return [named(v) for v in value]
        if isinstance(value, str) and _UUID.fullmatch(value):
            return names.get(value, "unknown id")
        if key == "changed_by":
            return "the writer" if value == names["who"] else value
        return value

    out: dict[str, list[Any]] = {}
    for table, sql in tables.items():
        rows = [named(json.loads(r[0])) for r in await api.db.fetch(sql, org.id)]
        out[table] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    return out


async def test_a_batch_stores_what_single_creates_store(api):
    org_b, batcher, mood_b, phq_b, sub_b = await _org(api, "batch")
    org_s, single, mood_s, phq_s, sub_s = await _org(api, "single")
    items = _items(mood_b, phq_b)
    invalid = {**items[1], "value": 11}
    duplicate = {**items[0], "value": 5}  # the same (source, external_id) as the first item: stored once
    r = await batcher.post("/v1/measurements/batch", json={"measurements": [*items, invalid, duplicate]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created", "created", "created", "error", "duplicate"]
    assert results[4]["id"] == results[0]["id"]
    assert results[3]["problem"]["code"] == (await single.post("/v1/measurements", json={
        **invalid, "client_id": mood_s["client_id"], "marker_id": mood_s["id"]})).json()["code"]
    singles = [(await single.post("/v1/measurements", json=body)).json() for body in _items(mood_s, phq_s)]
    assert [sorted(x) for x in results[:2]] == [["id", "index", "status"]] * 2  # no alert: no safety_alert key
    # The alert a batch item opens is answered as the single create answers it.
    alert_b, alert_s = results[2]["safety_alert"], singles[2]["safety_alert"]
    assert {k: v for k, v in alert_b.items() if k not in ("id", "client_id", "measurement_id", *NOW)} == \
        {k: v for k, v in alert_s.items() if k not in ("id", "client_id", "measurement_id", *NOW)}
    assert alert_b["measurement_id"] == results[2]["id"]

    async def names(org: Any, c: Any, mood: dict[str, Any], phq: dict[str, Any], sub: dict[str, Any]) -> dict:
        who = (await api.app.state.ctx.tokens.verify(c.token)).who
        return {str(org.id): "org", mood["client_id"]: "client", mood["id"]: "mood", phq["id"]: "phq",
                sub["id"]: "subscription", "who": who}

    names_b = await names(org_b, batcher, mood_b, phq_b, sub_b)
    names_s = await names(org_s, single, mood_s, phq_s, sub_s)
    stored_b = await _stored(api, org_b, names_b)
    stored_s = await _stored(api, org_s, names_s)
    assert [len(stored_b[t]) for t in stored_b] == [3, 1, 4, 4, 5, 5]
    for table in stored_b:
        assert stored_b[table] == stored_s[table], table
    # The batch's measurements are their own first versions (no history row), the single creates' are not.
    for org, authors, history_rows in ((org_b, {names_b["who"]}, 1), (org_s, {None}, 4)):
        assert {r[0] for r in await api.db.fetch("SELECT first_version_by FROM measurements WHERE org_id = $1",
                                                 org.id)} == authors
        assert await api.db.fetchval(f"SELECT count(*) FROM history WHERE org_id = $1 AND collection IN {WRITTEN}",
                                     org.id) == history_rows  # the batch's: its alert's only

    # One audit row per resource type the batch wrote, naming what it created, in the items' order.
    created = [uuid.UUID(x["id"]) for x in results[:3]]
    rows = await events(api, org_b.id, method="POST")
    batch_rows = [e for e in rows if e["path"] == "/v1/measurements/batch"]
    assert [(e["resource_type"], e["action"], e["outcome"], e["status_code"]) for e in batch_rows] == [
        ("Measurement", "create", "success", None), ("SafetyAlert", "create", "success", None)]
    assert batch_rows[0]["resource_ids"] == created
    assert batch_rows[0]["client_ids"] == [uuid.UUID(mood_b["client_id"])]
    assert batch_rows[1]["resource_ids"] == [uuid.UUID(alert_b["id"])]


async def _post_failing(c: Any, body: dict[str, Any]) -> int:
    """The batch's status; 500 when the failure reached the test client as the application's exception."""
    try:
        return (await c.post("/v1/measurements/batch", json=body)).status_code
    except Exception:  # noqa: BLE001 - the in-process transport raises what the server answered 500 for
        return 500


@pytest.mark.parametrize("fails", ["audit_events", "measurements"])
async def test_a_batch_and_its_audit_row_commit_together_or_not_at_all(api, fails):
    """The audit row refused: nothing the batch wrote commits; the write refused: no audit row says it
    succeeded."""
    org, c, mood, phq, _ = await _org(api, "A")
    refuse = "NEW.outcome = 'success'" if fails == "audit_events" else "NEW.note = 'refuse me'"
    owner = await api.db.connect()
    try:  # a fault in the database itself, for this test's database only
        await owner.execute(f"""
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF {refuse} THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON {fails} FOR EACH ROW EXECUTE FUNCTION refuse();""")
    finally:
        await owner.close()
    items = [{**item, "note": "refuse me"} for item in _items(mood, phq)]
    assert await _post_failing(c, {"measurements": items}) == 500
    for table in ("measurements", "safety_alerts", "webhook_outbox"):
        assert await api.db.fetchval(f"SELECT count(*) FROM {table} WHERE org_id = $1", org.id) == 0, table
    for table in ("record_versions", "changes"):
        assert await api.db.fetchval(f"SELECT count(*) FROM {table} WHERE org_id = $1 AND collection IN {WRITTEN}",
                                     org.id) == 0, table
    batch_rows = [e for e in await events(api, org.id, method="POST") if e["path"] == "/v1/measurements/batch"]
    # Refused with its audit row: recorded afterwards, as the error it was, naming what it would have written.
    # Refused before anything was written: nothing was touched, so no row (and none that says it succeeded).
    assert [(e["resource_type"], e["outcome"], e["status_code"]) for e in batch_rows] == (
        [("Measurement", "error", 500), ("SafetyAlert", "error", 500)] if fails == "audit_events" else [])
