"""Measurements from mood-tracking apps: batches, idempotency keys, instrument scoring, safety alerts."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from service.domain.instruments import INSTRUMENTS
from tests.support.factories import create

ALL = "system/*.cruds"
AT = "2026-11-20T08:00:00+09:00"


@pytest.fixture
async def setup(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    marker = await create(c, "outcome-markers", min=0, max=10, name="Mood", kind="mood", unit="{score}")
    return api, c, marker


def item(marker, i, **kw):
    return {"client_id": marker["client_id"], "marker_id": marker["id"], "value": i % 10, "observed_at": AT,
            "source": "moodapp", "external_id": f"m-{i}", **kw}


async def test_batch_of_1000_with_invalid_and_duplicate_items(setup):
    api, c, marker = setup
    stored = [item(marker, i) for i in range(5)]
    first = await c.post("/v1/measurements/batch", json={"measurements": stored})
    assert [r["status"] for r in first.json()["results"]] == ["created"] * 5
    batch = [item(marker, i) for i in range(990)]  # 0-4 are already stored
    bad = [item(marker, 2000, value=11), item(marker, 2001, observed_at="2026-11-20T08:00:00"),
           item(marker, 2002, marker_id=str(uuid.uuid4())), item(marker, 2003, items=[1, 2]),
           item(marker, 2004, value="3"), item(marker, 2005, unknown=1), {"nonsense": True},
           item(marker, 2007, client_id=str(uuid.uuid4())), item(marker, 2008, value=-1),
           item(marker, 2009, value=True)]
    batch[500:500] = bad[:5]
    batch[700:700] = bad[5:]
    assert len(batch) == 1000
    before = await api.db.fetchval("SELECT count(*) FROM measurements")
    r = await c.post("/v1/measurements/batch", json={"measurements": batch})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == list(range(1000))
    counts = {s: sum(1 for x in results if x["status"] == s) for s in ("created", "duplicate", "error")}
    assert counts == {"created": 985, "duplicate": 5, "error": 10}
    errors = [x for x in results if x["status"] == "error"]
    assert [x["index"] for x in errors] == [500, 501, 502, 503, 504, 700, 701, 702, 703, 704]
    assert all(x["problem"]["status"] == 422 and x["problem"]["errors"] for x in errors)
    assert errors[0]["problem"]["code"] == "value_out_of_range"
    assert errors[1]["problem"]["errors"][0]["field"] == "observed_at"
    assert errors[2]["problem"]["errors"][0]["field"] == "marker_id"
    dups = [x for x in results if x["status"] == "duplicate"]
    assert {d["id"] for d in dups} == {x["id"] for x in first.json()["results"]}
    assert await api.db.fetchval("SELECT count(*) FROM measurements") == before + 985
    assert await api.db.fetchval("SELECT count(*) FROM record_versions WHERE collection = 'measurements'") == 990
    again = await c.post("/v1/measurements/batch", json={"measurements": batch})
    statuses = [x["status"] for x in again.json()["results"]]
    assert statuses.count("created") == 0
    assert statuses.count("duplicate") == 990
    assert await api.db.fetchval("SELECT count(*) FROM measurements") == before + 985


async def test_duplicate_does_not_change_the_stored_value(setup):
    api, c, marker = setup
    await c.post("/v1/measurements/batch", json={"measurements": [item(marker, 1, value=4)]})
    r = await c.post("/v1/measurements/batch", json={"measurements": [item(marker, 1, value=9)]})
    dup = r.json()["results"][0]
    assert dup["status"] == "duplicate"
    assert (await c.get(f"/v1/measurements/{dup['id']}")).json()["value"] == 4


async def test_1001_items_is_a_request_error(setup):
    api, c, marker = setup
    r = await c.post("/v1/measurements/batch", json={"measurements": [item(marker, i) for i in range(1001)]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "measurements"
    assert await api.db.fetchval("SELECT count(*) FROM measurements") == 0


async def test_instrument_items_in_a_batch(setup):
    api, c, _ = setup
    phq = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9")
    base = {"client_id": phq["client_id"], "marker_id": phq["id"], "observed_at": AT}
    r = await c.post("/v1/measurements/batch", json={"measurements": [
        {**base, "items": [3, 3, 3, 3, 3, 3, 2, 0, 0]},  # 20: severe band
        {**base, "items": [1, 1, 1, 1, 1, 1, 1, 1, 0]},  # 8: no risk
        {**base, "items": [1, 1, 1, 1, 1, 1, 1, 1]},  # missing an item
        {**base, "items": [0, 0, 0, 0, 0, 0, 0, 0, 4]},  # 4 on a 0-3 item
        {**base, "items": [0, 0, 0, 0, 0, 0, 0, 0, 2]},  # item 9 endorsed
    ]})
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["created", "created", "error", "error", "created"]
    assert "severe" in res[0]["safety_alert"]["reason"]
    assert "safety_alert" not in res[1] or res[1]["safety_alert"] is None
    assert res[2]["problem"]["code"] == "items_incomplete"
    assert res[3]["problem"]["errors"][0]["field"] == "items.8"
    assert "item 9" in res[4]["safety_alert"]["reason"]
    values = {x["id"]: (await c.get(f"/v1/measurements/{x['id']}")).json()["value"] for x in res if x.get("id")}
    assert sorted(values.values()) == [2, 8, 20]


async def test_concurrent_requests_with_one_idempotency_key_create_one_record(setup):
    api, c, marker = setup
    body = item(marker, 1)
    del body["external_id"]
    key = {"Idempotency-Key": "retry-" + uuid.uuid4().hex}
    responses = await asyncio.gather(*[c.post("/v1/measurements", json=body, headers=key) for _ in range(10)])
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {201, 409}
    assert 201 in codes
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1
    assert await api.db.fetchval("SELECT count(*) FROM measurements") == 1
    replay = await c.post("/v1/measurements", json=body, headers=key)
    first = next(r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers)
    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    other = await c.post("/v1/measurements", json={**body, "value": 7}, headers=key)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert await api.db.fetchval("SELECT count(*) FROM measurements") == 1


async def test_failed_requests_are_not_stored_under_their_key(setup):
    api, c, marker = setup
    key = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
    bad = await c.post("/v1/measurements", json=item(marker, 1, value=99), headers=key)
    assert bad.status_code == 422
    good = await c.post("/v1/measurements", json=item(marker, 1, value=5), headers=key)
    assert good.status_code == 201
    long_key = {"Idempotency-Key": "x" * 256}
    assert (await c.post("/v1/measurements", json=item(marker, 2), headers=long_key)).status_code == 400


async def test_idempotency_keys_are_per_organization(api):
    key = {"Idempotency-Key": "same-key"}
    for name in ("A", "B"):
        c = api.client(await api.token(await api.org(name), ALL))
        r = await c.post("/v1/clients", json={"display_name": name}, headers=key)
        assert r.status_code == 201
        assert r.json()["display_name"] == name


async def test_fifty_concurrent_risk_measurements_open_fifty_alerts(setup):
    api, c, _ = setup
    phq = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9")
    body = {"client_id": phq["client_id"], "marker_id": phq["id"], "observed_at": AT,
            "items": [0, 0, 0, 0, 0, 0, 0, 0, 1]}
    responses = await asyncio.gather(*[c.post("/v1/measurements", json=body) for _ in range(50)])
    assert [r.status_code for r in responses] == [201] * 50
    alert_ids = {r.json()["safety_alert"]["id"] for r in responses}
    assert len(alert_ids) == 50
    assert await api.db.fetchval("SELECT count(*) FROM safety_alerts WHERE status = 'open'") == 50
    assert await api.db.fetchval("SELECT count(DISTINCT measurement_id) FROM safety_alerts") == 50


@pytest.mark.parametrize(("instrument", "items", "total", "band"), [
    ("phq9", [0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "minimal"),
    ("phq9", [1, 1, 1, 1, 1, 0, 0, 0, 0], 5, "mild"),
    ("phq9", [2, 2, 1, 1, 1, 1, 1, 1, 0], 10, "moderate"),
    ("phq9", [2, 2, 2, 2, 2, 2, 2, 1, 0], 15, "moderately_severe"),
    ("phq9", [3, 3, 3, 3, 3, 3, 3, 3, 3], 27, "severe"),
    ("gad7", [0, 1, 1, 1, 1, 0, 0], 4, "minimal"),
    ("gad7", [1, 1, 1, 1, 1, 1, 3], 9, "mild"),
    ("gad7", [2, 2, 2, 2, 2, 2, 2], 14, "moderate"),
    ("gad7", [3, 3, 3, 3, 3, 0, 0], 15, "severe"),
])
async def test_scoring_and_bands_by_hand(setup, instrument, items, total, band):
    """The service scores the items (their sum) and bands the total as the published bands do."""
    _, c, _ = setup
    marker = await create(c, "outcome-markers", kind="instrument", name=instrument, instrument=instrument)
    r = await c.post("/v1/measurements", json={"client_id": marker["client_id"], "marker_id": marker["id"],
                                               "observed_at": AT, "items": items})
    assert r.status_code == 201, r.text
    assert (r.json()["value"], r.json()["band"]) == (total, band)
    assert INSTRUMENTS[instrument].band(total) == band


def test_risk_rules_by_hand():
    phq, gad = INSTRUMENTS["phq9"], INSTRUMENTS["gad7"]
    assert phq.risk_reasons([0, 0, 0, 0, 0, 0, 0, 0, 1], 1)
    assert phq.risk_reasons([3, 3, 3, 3, 3, 3, 2, 0, 0], 20)
    assert not phq.risk_reasons([3, 3, 3, 3, 3, 3, 1, 0, 0], 19)
    assert gad.risk_reasons([3, 3, 3, 3, 3, 0, 0], 15)
    assert not gad.risk_reasons([3, 3, 3, 3, 2, 0, 0], 14)


async def test_patient_app_posts_its_own_measurements_only(api):
    org = await api.org()
    admin = api.client(await api.token(org, ALL))
    mine = await create(admin, "outcome-markers", kind="mood", name="Mood", min=0, max=10)
    theirs = await create(admin, "outcome-markers", kind="mood", name="Mood", min=0, max=10)
    phone = api.client(await api.token(org, "patient/Measurement.crs patient/SafetyAlert.rs",
                                       patient=uuid.UUID(mine["client_id"])))
    r = await phone.post("/v1/measurements/batch", json={"measurements": [
        {"client_id": mine["client_id"], "marker_id": mine["id"], "value": 6, "observed_at": AT},
        {"client_id": theirs["client_id"], "marker_id": theirs["id"], "value": 6, "observed_at": AT},
    ]})
    assert [x["status"] for x in r.json()["results"]] == ["created", "error"]
    listed = (await phone.get("/v1/measurements")).json()["data"]
    assert {m["client_id"] for m in listed} == {mine["client_id"]}
    assert (await phone.get(f"/v1/measurements?client_id={theirs['client_id']}")).json()["data"] == []


async def test_each_item_gets_the_problem_a_single_post_of_it_gets(setup):
    """A whole valid batch is validated at once and a batch with invalid items item by item: either way each
    invalid item's problem is the one POST /v1/measurements answers for that body."""
    api, c, marker = setup
    other = await create(c, "outcome-markers", min=0, max=10, name="Sleep", kind="mood")
    bad = [item(marker, 1, value=11), item(marker, 2, value="3"), item(marker, 3, observed_at="2026-11-20T08:00"),
           item(marker, 4, unknown=1), {"nonsense": True}, item(marker, 5, marker_id=other["id"]),
           item(marker, 6, client_id=str(uuid.uuid4())), item(marker, 7, items=[1]), item(marker, 8, value=None),
           item(marker, 9, note="a\u0000b"), item(marker, 10, observed_at="1800-01-01T00:00:00Z")]
    good = [item(marker, 100 + i) for i in range(5)]
    r = await c.post("/v1/measurements/batch", json={"measurements": good[:2] + bad + good[2:]})
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created"] * 2 + ["error"] * len(bad) + ["created"] * 3
    for body, result in zip(bad, results[2:-3], strict=True):
        single = (await c.post("/v1/measurements", json=body)).json()
        assert result["problem"]["code"] == single["code"], body
        assert result["problem"]["errors"] == single["errors"], body
    assert await api.db.fetchval("SELECT count(*) FROM measurements") == 5


async def test_batch_records_match_what_is_read_back(setup):
    """The history snapshots and alerts of a batch are built from the inserted values: they are what a read
    returns, offsets and instrument totals included."""
    api, c, marker = setup
    phq = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9")
    batch = [item(marker, 1, observed_at="2026-11-20T08:00:00.123456+05:30", note="n"),
             item(marker, 2, observed_at="2026-11-20T08:00:00-03:00", value=2.5),
             {"client_id": phq["client_id"], "marker_id": phq["id"], "observed_at": "2026-11-20T08:00:00Z",
              "items": [3, 3, 3, 3, 3, 3, 2, 0, 0]}]
    results = (await c.post("/v1/measurements/batch", json={"measurements": batch})).json()["results"]
    assert [x["status"] for x in results] == ["created"] * 3
    for result in results:
        read = (await c.get(f"/v1/measurements/{result['id']}")).json()
        history = (await c.get(f"/v1/history/measurements/{result['id']}")).json()
        snapshot = history[-1]["record"] if isinstance(history, list) else history["data"][-1]["record"]
        # The history keeps the stored fields; safety_alert_ids is computed by each read.
        assert {k: v for k, v in snapshot.items() if k != "deleted_at"} == \
            {k: v for k, v in read.items() if k not in ("safety_alert_ids", "band")}  # computed when read
        assert read["safety_alert_ids"] == ([result["safety_alert"]["id"]] if result.get("safety_alert") else [])
    assert results[2]["safety_alert"]["measurement_id"] == results[2]["id"]
    assert (await c.get(f"/v1/measurements/{results[2]['id']}")).json()["value"] == 20


async def test_item_responses_are_whole_numbers_in_range_each_refused_with_its_own_error(setup):
    """A PHQ-9's item responses: a whole float is the integer, anything else that is not an integer (a string, a
    boolean, a fraction, NaN's stand-in null) is ``int_type``, and a response beyond a small integer names the bound
    it broke. Pinned because these checks are pydantic's own int validator with ``_integral`` before it
    (``collections.types.SmallInt``): the order of those in the type decides how many Python calls an item costs,
    and a reordering must not change what a client is told."""
    api, c, _ = setup
    phq9 = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9")
    nine = [1, 2, 1, 0, 1, 2, 1, 0, 0]

    cases = [2.0, "1", True, 2.5, None, 40000, -40000, 2**60]
    batch = [item(phq9, i, items=[value, *nine[1:]], value=None) for i, value in enumerate(cases)]
    r = await c.post("/v1/measurements/batch", json={"measurements": batch})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["status"] == "created", results[0]
    stored = await api.db.fetchval("SELECT items FROM measurements WHERE id = $1", uuid.UUID(results[0]["id"]))
    assert stored == [2, *nine[1:]]
    told = [(x["status"], [(e["field"], e["code"], e["message"]) for e in x["problem"]["errors"]])
            for x in results[1:]]
    not_int = ("error", [("items.0", "int_type", "Input should be a valid integer")])
    assert told == [
        not_int, not_int, not_int, not_int,
        ("error", [("items.0", "less_than_equal", "Input should be less than or equal to 32767")]),
        ("error", [("items.0", "greater_than_equal", "Input should be greater than or equal to -32768")]),
        ("error", [("items.0", "less_than_equal", "Input should be less than or equal to 32767")]),
    ]


# Each body against its marker's rule at the rule's edges (``outcomes.fit_join``, asked by a single write with one row
# and by a batch in its statement): (marker, body fields, the problem's code or None, the stored value).
PHQ9_ALL_3, GAD7_ALL_3 = [3] * 9, [3] * 7
EDGES = [
    ("mood", {"value": 0}, None, 0),
    ("mood", {"value": 10}, None, 10),  # exactly the marker's max
    ("mood", {"value": -0.001}, "value_out_of_range", None),
    ("mood", {"value": 10.001}, "value_out_of_range", None),
    ("mood", {"value": None}, "value_required", None),
    ("mood", {"value": 3, "items": [1]}, "items_not_allowed", None),
    ("phq9", {"items": PHQ9_ALL_3}, None, 27),  # the instrument's whole range: item max on every item
    ("phq9", {"items": [0] * 9}, None, 0),
    ("phq9", {"items": PHQ9_ALL_3, "value": 27}, None, 27),  # the total sent, exactly
    ("phq9", {"items": PHQ9_ALL_3, "value": 26}, "value_mismatch", None),
    ("phq9", {"items": [0] * 8 + [4]}, "validation_error", None),  # one above the item max: item_out_of_range
    ("phq9", {"items": [-1, 0, 0, 0, 0, 0, 0, 0, 5]}, "validation_error", None),  # two, each named
    ("phq9", {"items": [1] * 8}, "items_incomplete", None),
    ("phq9", {"items": [1] * 10}, "items_incomplete", None),
    ("phq9", {"value": 12}, "items_required", None),
    ("gad7", {"items": GAD7_ALL_3}, None, 21),
    ("gad7", {"items": PHQ9_ALL_3}, "items_incomplete", None),  # a PHQ-9's nine on a GAD-7
]


async def test_a_measurement_fits_its_marker_alike_alone_and_in_a_batch_at_the_rules_edges(setup):
    """The rule a measurement meets against its marker (value in range, instrument items complete and in range, a
    value sent equal to the items' total) answers the same problem, word for word, to a single POST and to a batch
    item, and stores the same value; at its edges (a value exactly at the marker's max, every item at its max, the
    exact total sent) the body is taken, one step beyond it is refused."""
    api, c, mood = setup
    markers = {"mood": mood,
               "phq9": await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9",
                                    client_id=mood["client_id"]),
               "gad7": await create(c, "outcome-markers", kind="instrument", name="GAD-7", instrument="gad7",
                                    client_id=mood["client_id"])}
    bodies = [{**item(markers[m], n, value=None), **fields} for n, (m, fields, _, _) in enumerate(EDGES)]
    singles = [await c.post("/v1/measurements", json={**b, "external_id": f"single-{n}"})
               for n, b in enumerate(bodies)]
    r = await c.post("/v1/measurements/batch", json={"measurements": bodies})
    assert r.status_code == 200, r.text
    for (marker, fields, code, stored), single, result in zip(EDGES, singles, r.json()["results"], strict=True):
        case = (marker, fields)
        if code is None:
            assert (single.status_code, result["status"]) == (201, "created"), (case, single.text, result)
            assert single.json()["value"] == stored, case
            assert (await c.get(f"/v1/measurements/{result['id']}")).json()["value"] == stored, case
        else:
            assert (single.status_code, single.json()["code"]) == (422, code), (case, single.text)
            assert result["status"] == "error", (case, result)
            assert {k: result["problem"][k] for k in ("code", "detail", "errors")} == \
                {k: single.json()[k] for k in ("code", "detail", "errors")}, case
    one_bad, two_bad = (r.json()["results"][n]["problem"]["errors"] for n in (10, 11))
    assert [(e["field"], e["code"]) for e in one_bad] == [("items.8", "item_out_of_range")]
    assert [(e["field"], e["code"]) for e in two_bad] == [("items.0", "item_out_of_range"),
                                                         ("items.8", "item_out_of_range")]
    created = sum(1 for _, _, code, _ in EDGES if code is None)
    assert await api.db.fetchval("SELECT count(*) FROM measurements") == 2 * created


async def test_a_batch_item_of_a_deleted_marker_or_client_is_refused_as_a_single_post_is(setup):
    """A marker or a client deleted since the app last synced: the batch item gets the single POST's problem, and
    the batch's other items are stored."""
    api, c, mood = setup
    gone_marker = await create(c, "outcome-markers", min=0, max=10, name="Gone", kind="mood",
                               client_id=mood["client_id"])
    gone_client = await create(c, "clients")
    orphan = await create(c, "outcome-markers", min=0, max=10, name="Orphan", kind="mood",
                          client_id=gone_client["id"])
    assert (await c.delete(f"/v1/outcome-markers/{gone_marker['id']}")).status_code == 204
    assert (await c.delete(f"/v1/clients/{gone_client['id']}")).status_code == 204
    bad = [item(gone_marker, 1), item(orphan, 2)]
    r = await c.post("/v1/measurements/batch", json={"measurements": [item(mood, 0), *bad]})
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created", "error", "error"]
    for body, result in zip(bad, results[1:], strict=True):
        single = (await c.post("/v1/measurements", json=body)).json()
        assert {k: result["problem"][k] for k in ("code", "detail", "errors")} == \
            {k: single[k] for k in ("code", "detail", "errors")}, body
    assert await api.db.fetchval("SELECT count(*) FROM measurements") == 1
