"""A change-feed page (``GET /v1/changes``) in one round trip: its one statement, alone on a pinned connection
(``service.db.PinnedTenants``) once the token is known not to be revoked, gated on the session's tenant being the
token's (``repository.tenant_guard``); its audit rows committed by the group commit before the response. Through
HTTP, against PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

from tests.support.audit import events
from tests.support.changes import drain
from tests.support.factories import create
from tests.support.gqlkit import pinned_session_holds, statements_on_the_wire
from tests.support.harness import Api
from tests.support.oauth import register, secret_token

ALL = "system/*.cruds"
READER = "system/Client.s system/Strength.s"


async def _caseload(api, org, clients=2):
    """Clients with a strength each, every change visible in the feed (drained); the ids made."""
    writer = api.client(await api.token(org, ALL))
    made = []
    for _ in range(clients):
        client = await create(writer, "clients")
        made.append((client, await create(writer, "strengths", client_id=client["id"])))
    ids = {r["id"] for pair in made for r in pair}
    await drain(writer, None, want=lambda es: ids <= {e["id"] for e in es})
    return made


async def test_a_page_is_one_statement_and_its_audit_rows_commit_before_the_response(api):
    org = await api.org("A")
    (client, strength), _ = await _caseload(api, org)
    reader = api.client(await api.token(org, READER))
    first = await reader.get("/v1/changes")  # the token's first use asks the database whether it is revoked
    assert first.status_code == 200, first.text
    await reader.get("/v1/changes")  # the pinned connection takes the tenant
    ctx = api.app.state.ctx
    rid = uuid.uuid4().hex
    with statements_on_the_wire(ctx.pinned.engine) as pinned, statements_on_the_wire(ctx.engine) as primary:
        resp = await reader.get("/v1/changes", headers={"X-Request-Id": rid})
        await asyncio.sleep(0)  # asyncpg calls its query loggers soon after, not at once
    assert resp.status_code == 200, resp.text
    assert resp.json() == first.json()
    assert len(pinned) == 1, pinned
    assert "FROM changes" in pinned[0]
    assert "app_org()" in pinned[0]
    assert len(primary) == 1, primary  # the group commit of the audit rows
    assert "INSERT INTO audit_events" in primary[0]
    listed = {(e["type"], e["id"]) for e in resp.json()["data"]}
    assert {("client", client["id"]), ("strength", strength["id"])} <= listed
    rows = {r["resource_type"]: r for r in await events(api, request_id=rid)}  # committed before the response
    assert set(rows) == {"Client", "Strength"}
    assert str(strength["id"]) in map(str, rows["Strength"]["resource_ids"])
    assert {r["org_id"] for r in rows.values()} == {org.id}
    assert {r["action"] for r in rows.values()} == {"search"}


async def test_pinned_and_transaction_pages_answer_and_audit_alike(api, db):
    """The same pages through an app with pinned reads and one without (DB_PINNED_POOL_SIZE=0): the same bodies and
    audit rows, for the whole feed, pages of two with their cursors, one type, and a patient's feed."""
    org = await api.org("A")
    made = await _caseload(api, org, clients=3)
    patient = uuid.UUID(made[0][0]["id"])
    answers: dict[tuple[str, str], list] = {}
    async with Api.start(db, db_pinned_pool_size=0) as plain:
        assert plain.app.state.ctx.pinned is None
        for name, app in (("pinned", api), ("plain", plain)):
            readers = {"org": app.client(await app.token(org, READER)),
                       "patient": app.client(await app.token(org, "patient/Client.s patient/Strength.s",
                                                             patient=patient))}
            for who, reader in readers.items():
                await reader.get("/v1/changes")  # known not revoked from here on: the pinned app reads pinned
                for params in ({}, {"types": "strength"}, {"limit": 2}):
                    cursor, pages = None, []
                    while True:
                        rid = uuid.uuid4().hex
                        resp = await reader.get("/v1/changes", params={**params, **({"since": cursor} if cursor
                                                                                    else {})},
                                                headers={"X-Request-Id": rid})
                        assert resp.status_code == 200, resp.text
                        audited = sorted((r["resource_type"], r["resource_ids"], r["client_ids"], r["action"])
                                         for r in await events(api, request_id=rid))
                        pages.append((resp.json(), audited))
                        cursor = resp.json()["next_cursor"]
                        if not resp.json()["has_more"]:
                            break
                    answers[name, f"{who} {params}"] = pages
    for key in {k for _, k in answers}:
        assert answers["pinned", key] == answers["plain", key], key
    whole = [e for page, _ in answers["pinned", "org {}"] for e in page["data"]]
    assert len(whole) == 6
    mine = [e for page, _ in answers["pinned", "patient {}"] for e in page["data"]]
    assert {e["id"] for e in mine} == {made[0][0]["id"], made[0][1]["id"]}


async def test_one_connection_serves_each_tenant_its_own_feed(db):
    """One pinned connection (pool of one) read by two organizations and a patient's app in turn, and its session's
    tenant changed behind the service's back: every page is the asker's own, every audit row in the asker's
    organization."""
    async with Api.start(db, db_pinned_pool_size=1, db_max_overflow=0) as api:
        a, b = await api.org("A"), await api.org("B")
        made = {org.name: await _caseload(api, org) for org in (a, b)}
        own = {name: {r["id"] for pair in pairs for r in pair} for name, pairs in made.items()}
        patient = made["A"][0][0]["id"]
        readers = {"A": api.client(await api.token(a, READER)), "B": api.client(await api.token(b, READER)),
                   "patient": api.client(await api.token(a, "patient/Client.s patient/Strength.s",
                                                         patient=uuid.UUID(patient)))}
        expected = {"A": own["A"], "B": own["B"], "patient": {patient, made["A"][0][1]["id"]}}
        orgs = {"A": a.id, "B": b.id, "patient": a.id}
        for _ in range(2):  # the second round: every token known not revoked, every page on the pinned connection
            for who, reader in readers.items():
                rid = uuid.uuid4().hex
                resp = await reader.get("/v1/changes", headers={"X-Request-Id": rid})
                assert resp.status_code == 200, resp.text
                assert {e["id"] for e in resp.json()["data"]} == expected[who], who
                assert {r["org_id"] for r in await events(api, request_id=rid)} == {orgs[who]}

        # A's page last, so the pool knows the session to hold A's tenant; then, behind the service's back, the
        # connection's session is made to hold organization B.
        assert (await readers["A"].get("/v1/changes")).status_code == 200
        await pinned_session_holds(api, b.id)
        rid = uuid.uuid4().hex
        with statements_on_the_wire(api.app.state.ctx.pinned.engine) as sent:
            resp = await readers["A"].get("/v1/changes", headers={"X-Request-Id": rid})
            await asyncio.sleep(0)
        assert resp.status_code == 200
        assert {e["id"] for e in resp.json()["data"]} == own["A"]
        # the page found B's tenant and read nothing; the tenant set; the page again
        assert ["set_config('app.org_id', $1, false)" in q for q in sent] == [False, True, False]
        assert "FROM changes" in sent[0]
        assert sent[0] == sent[2]
        assert {r["org_id"] for r in await events(api, request_id=rid)} == {a.id}


async def test_a_token_without_a_search_scope_or_from_another_organization_sees_nothing_of_it(api):
    org, other = await api.org("A"), await api.org("B")
    (client, _), _ = await _caseload(api, org)
    no_search = api.client(await api.token(org, "system/Client.r system/Strength.r"))
    foreign = api.client(await api.token(other, READER))
    for _ in range(2):  # the token's first use (a transaction), then pinned
        resp = await no_search.get("/v1/changes")
        assert resp.status_code == 403
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert client["id"] not in resp.text
        resp = await foreign.get("/v1/changes")
        assert resp.status_code == 200
        assert resp.json()["data"] == []
    for row in await events(api, org_id=other.id):
        assert uuid.UUID(client["id"]) not in (row["resource_ids"] or []), row


async def test_a_revoked_token_is_refused_at_once_after_pinned_pages(api):
    """A token read on a pinned connection (known not revoked) and then revoked: its next page is refused at once,
    read nowhere."""
    org = await api.org("A")
    await _caseload(api, org, clients=1)
    creds = await register(api, org, READER)
    token = await secret_token(api, creds)
    reader = api.client(token)
    for _ in range(2):
        assert (await reader.get("/v1/changes")).status_code == 200
    revoked = await api.http.post("/oauth/revoke", data={"token": token},
                                  auth=(creds["client_id"], creds["client_secret"]))
    assert revoked.status_code == 200
    with statements_on_the_wire(api.app.state.ctx.pinned.engine) as pinned:
        refused = await reader.get("/v1/changes")
        await asyncio.sleep(0)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert not any("FROM changes" in q for q in pinned)
