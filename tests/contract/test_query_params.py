"""Strict query parameters under /v1 (CONTRACT.md section 4): an unknown one is a 422 naming it (``in: query``)
on every route; ``external_id=`` on every list; the measurements' observed window; ``since``-style parameters
take a date or a timestamp with an offset."""

from __future__ import annotations

import re
import uuid

from service.collections.registry import REGISTRY
from tests.support.factories import create

ALL = "system/*.cruds system/AuditEvent.s"
UNKNOWN = "zz_unknown"


def names_unknown(r, name: str = UNKNOWN) -> None:
    assert r.status_code == 422, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert {"field": name, "in": "query", "code": "extra_forbidden"}.items() <= next(
        e for e in problem["errors"] if e["field"] == name).items(), problem
    assert name in problem["detail"]


async def _path_values(api, c) -> dict[str, str]:
    """A live record for every path parameter a /v1 route names."""
    values: dict[str, str] = {}
    client = await create(c, "clients")
    values["client_id"] = client["id"]
    for coll in REGISTRY.values():
        record = client if coll.name == "clients" else await create(c, coll.name, client_id=client["id"])
        values[f"{coll.type_name}_id"] = record["id"]
        values[f"history:{coll.name}"] = record["id"]
    values["webhook_subscription_id"] = (await create(c, "webhook-subscriptions"))["id"]
    values["link_id"] = str(uuid.uuid4())
    values["delivery_id"] = str(uuid.uuid4())  # an unknown one: the parameter is refused before it is looked up
    return values


def _fill(path: str, values: dict[str, str]) -> str:
    history = re.match(r"^/v1/history/([a-z-]+)/\{record_id\}$", path)
    if history:
        return path.replace("{record_id}", values[f"history:{history.group(1)}"])
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def v1_operations(api, methods: set[str]) -> list[tuple[str, str]]:
    doc = api.app.openapi()
    return [(method, path) for path, ops in doc["paths"].items() if path.startswith("/v1/")
            for method in ops if method in methods]


async def test_every_v1_get_route_refuses_an_unknown_query_parameter(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    values = await _path_values(api, c)
    operations = v1_operations(api, {"get"})
    assert len(operations) > 30
    for _, path in operations:
        names_unknown(await c.get(_fill(path, values), params={UNKNOWN: "1"}))
        # next to a parameter the route does declare, too
        if path == "/v1/clients":
            names_unknown(await c.get(path, params={"limit": "5", UNKNOWN: "1"}))


async def test_every_v1_write_route_refuses_an_unknown_query_parameter_and_stores_nothing(api, db):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    values = await _path_values(api, c)
    changes = await db.fetchval("SELECT count(*) FROM changes")
    for method, path in v1_operations(api, {"post", "put", "patch", "delete"}):
        r = await c.request(method.upper(), _fill(path, values), params={UNKNOWN: "1"}, json={})
        names_unknown(r)
    assert await db.fetchval("SELECT count(*) FROM changes") == changes


async def test_misspelt_or_foreign_filters_are_refused(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    alert = await create(c, "safety-alerts")
    cases = [
        ("/v1/strengths", "client_idd"), ("/v1/strengths", "sort"), ("/v1/safety-alerts", "measurment_id"),
        ("/v1/strengths", "measurement_id"), ("/v1/clients", "foo"), ("/v1/measurements", "observed_after"),
        ("/v1/progress/summary", "safety"), ("/v1/audit-events", "clientid"), ("/v1/changes", "type"),
        ("/v1/bulk/export", "type"), ("/v1/webhook-subscriptions", "page"),
        (f"/v1/clients/{alert['client_id']}/summary", "from"),
    ]
    for path, name in cases:
        names_unknown(await c.get(path, params={name: alert["client_id"]}), name)
    # a declared filter is still a filter (the alert's own)
    own = await c.get("/v1/safety-alerts", params={"client_id": alert["client_id"]})
    assert [a["id"] for a in own.json()["data"]] == [alert["id"]]


async def test_external_id_on_clients_matches_identifiers_with_identifier_as_alias(api):
    org, other = await api.org("A"), await api.org("B")
    c = api.client(await api.token(org, ALL))
    theirs = api.client(await api.token(other, ALL))
    mine = await create(c, "clients", identifiers=[{"system": "urn:acc:mrn", "value": "X"}])
    await create(c, "clients", identifiers=[{"system": "urn:acc:mrn", "value": "Y"}])
    await create(c, "clients")
    await create(theirs, "clients", identifiers=[{"system": "urn:acc:mrn", "value": "X"}])
    await create(theirs, "clients", identifiers=[{"system": "urn:acc:mrn", "value": "Z"}])

    for params in ({"external_id": "urn:acc:mrn|X"}, {"identifier": "urn:acc:mrn|X"},
                   {"external_id": "urn:acc:mrn|X", "identifier": "urn:acc:mrn|X"}):
        r = await c.get("/v1/clients", params=params)
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["data"]] == [mine["id"]], params
    # another organization's identifier names nothing here
    assert (await c.get("/v1/clients", params={"external_id": "urn:acc:mrn|Z"})).json()["data"] == []
    conflict = await c.get("/v1/clients", params={"external_id": "urn:acc:mrn|X", "identifier": "urn:acc:mrn|Y"})
    assert conflict.status_code == 422
    assert conflict.json()["errors"][0]["field"] == "identifier"
    bad = await c.get("/v1/clients", params={"external_id": "no-bar"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "external_id"


async def test_external_id_on_measurements_is_source_and_external_id(api):
    org, other = await api.org("A"), await api.org("B")
    c = api.client(await api.token(org, ALL))
    theirs = api.client(await api.token(other, ALL))
    marker = await create(c, "outcome-markers")
    wanted = await create(c, "measurements", client_id=marker["client_id"], marker_id=marker["id"],
                          source="moodapp", external_id="m-1")
    await create(c, "measurements", client_id=marker["client_id"], marker_id=marker["id"],
                 source="moodapp", external_id="m-2")
    await create(c, "measurements", client_id=marker["client_id"], marker_id=marker["id"],
                 source="otherapp", external_id="m-1")
    await create(theirs, "measurements", source="moodapp", external_id="m-9")

    r = await c.get("/v1/measurements", params={"external_id": "moodapp|m-1"})
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["data"]] == [wanted["id"]]
    assert (await c.get("/v1/measurements", params={"external_id": "moodapp|m-9"})).json()["data"] == []


async def test_external_id_on_another_collection(api):
    org, other = await api.org("A"), await api.org("B")
    c = api.client(await api.token(org, ALL))
    theirs = api.client(await api.token(other, ALL))
    wanted = await create(c, "strengths", external_ids=[{"system": "urn:ehr", "value": "s-1"}])
    await create(c, "strengths", client_id=wanted["client_id"], external_ids=[{"system": "urn:ehr", "value": "s-2"}])
    await create(c, "strengths", client_id=wanted["client_id"])
    await create(theirs, "strengths", external_ids=[{"system": "urn:ehr", "value": "s-3"}])

    r = await c.get("/v1/strengths", params={"external_id": "urn:ehr|s-1"})
    assert [s["id"] for s in r.json()["data"]] == [wanted["id"]]
    assert (await c.get("/v1/strengths", params={"external_id": "urn:ehr|s-3"})).json()["data"] == []
    # combined with the other filters (and still paged)
    r = await c.get("/v1/strengths", params={"external_id": "urn:ehr|s-1", "client_id": str(uuid.uuid4())})
    assert r.json()["data"] == []


async def test_external_id_of_another_patient_names_nothing_for_a_patient_token(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    alice = await create(c, "clients", identifiers=[{"system": "urn:acc:mrn", "value": "ALICE"}])
    bob = await create(c, "clients", identifiers=[{"system": "urn:acc:mrn", "value": "BOB"}])
    await create(c, "strengths", client_id=bob["id"], external_ids=[{"system": "urn:ehr", "value": "bob-s"}])
    patient = api.client(await api.token(org, "patient/*.rs", patient=uuid.UUID(alice["id"])))
    assert (await patient.get("/v1/clients", params={"identifier": "urn:acc:mrn|BOB"})).json()["data"] == []
    assert (await patient.get("/v1/strengths", params={"external_id": "urn:ehr|bob-s"})).json()["data"] == []
    own = await patient.get("/v1/clients", params={"external_id": "urn:acc:mrn|ALICE"})
    assert [x["id"] for x in own.json()["data"]] == [alice["id"]]


async def test_observed_window_on_measurements(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    marker = await create(c, "outcome-markers")
    at = {}
    for stamp in ("2026-11-19T23:30:00+00:00", "2026-11-20T00:00:00+00:00", "2026-11-20T10:00:00+01:00",
                  "2026-11-21T00:00:00+00:00"):
        at[stamp] = (await create(c, "measurements", client_id=marker["client_id"], marker_id=marker["id"],
                                  observed_at=stamp))["id"]
    stamps = list(at)

    async def window(**params):
        r = await c.get("/v1/measurements", params={"marker_id": marker["id"], **params})
        assert r.status_code == 200, r.text
        return {m["id"] for m in r.json()["data"]}

    # since: at or after (inclusive); until: before (exclusive)
    assert await window(observed_since="2026-11-20T00:00:00Z") == {at[s] for s in stamps[1:]}
    assert await window(observed_until="2026-11-20T00:00:00Z") == {at[stamps[0]]}
    assert await window(observed_since="2026-11-20T00:00:00Z", observed_until="2026-11-20T09:00:00Z") == {
        at[stamps[1]]}  # 10:00+01:00 is 09:00 UTC: not before it
    assert await window(observed_since="2026-11-20T10:00:00+01:00", observed_until="2026-11-20T09:00:01Z") == {
        at[stamps[2]]}
    # a date is 00:00 UTC of that day
    assert await window(observed_since="2026-11-20", observed_until="2026-11-21") == {at[stamps[1]], at[stamps[2]]}
    # the offset counts: 10:00+01:00 is 09:00 UTC
    assert await window(observed_since="2026-11-20T09:00:01Z") == {at[stamps[3]]}
    for bad in ("2026-11-20T00:00:00", "1763596800", "2026-13-01"):
        r = await c.get("/v1/measurements", params={"observed_since": bad})
        assert r.status_code == 422, bad
        assert r.json()["errors"][0]["field"] == "observed_since"
        assert r.json()["errors"][0]["in"] == "query"


async def test_since_parameters_take_a_date_or_a_timestamp(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    strength = await create(c, "strengths")
    client_id = strength["client_id"]
    for path, name in [("/v1/strengths", "updated_since"), ("/v1/audit-events", "since"),
                       ("/v1/audit-events", "until"), ("/v1/progress/summary", "since"),
                       ("/v1/progress/summary", "until"), ("/v1/bulk/export", "since"),
                       (f"/v1/clients/{client_id}/summary", "since")]:
        for value in ("2026-01-01", "2026-01-01T10:00:00+01:00"):
            r = await c.get(path, params={name: value})
            assert r.status_code == 200, (path, name, value, r.text)
        naive = await c.get(path, params={name: "2026-01-01T10:00:00"})
        assert naive.status_code == 422, (path, name)
        assert naive.json()["errors"][0]["field"] == name
    # updated_since with a date: records updated on or after that day's 00:00 UTC
    assert [s["id"] for s in (await c.get("/v1/strengths", params={"updated_since": "2026-01-01"})).json()[
        "data"]] == [strength["id"]]
    assert (await c.get("/v1/strengths", params={"updated_since": "2200-01-01"})).json()["data"] == []


async def test_client_summary_with_a_timestamp(api):
    org = await api.org()
    c = api.client(await api.token(org, ALL))
    strength = await create(c, "strengths", label="asking for help")
    client_id = strength["client_id"]
    for occurred in ("2026-11-20T08:00:00+00:00", "2026-11-20T12:00:00+00:00"):
        await create(c, "strength-uses", client_id=client_id, strength_id=strength["id"], occurred_at=occurred,
                     situation=f"Situation at {occurred[11:16]}")

    by_day = await c.get(f"/v1/clients/{client_id}/summary", params={"since": "2026-11-20"})
    assert by_day.status_code == 200, by_day.text
    assert by_day.json()["since"] == "2026-11-20"
    assert "progress since 2026-11-20)" in by_day.json()["text"]
    assert "in 2 situations" in by_day.json()["text"]

    at_ten = await c.get(f"/v1/clients/{client_id}/summary", params={"since": "2026-11-20T11:00:00+01:00"})
    assert at_ten.status_code == 200, at_ten.text
    body = at_ten.json()
    assert body["since"] == "2026-11-20"
    assert "progress since 2026-11-20T11:00:00+01:00" in body["text"]
    # the window starts at the timestamp: the 08:00 UTC use is before 10:00 UTC, the 12:00 one inside
    assert "in 1 situation " in body["text"]
    assert "Situation at 12:00" in body["text"]
    assert "Situation at 08:00" not in body["text"]
