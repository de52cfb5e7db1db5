"""A change-feed page (``GET /v1/changes``) in one round trip: its one statement, alone on a pinned connection
(``service.db.PinnedTenants``) once the token is known not to be revoked, gated on the session's tenant being the
token's (``repository.tenant_guard``); its audit rows committed by the group commit before the response. Through
HTTP, against PostgreSQL."""

from __future__ import annotations

import uuid

from tests.support.audit import events
from tests.support.changes import drain
from tests.support.factories import create
from tests.support.gqlkit import (
    audited,
    each_reader_its_own,
    pinned_and_plain_alike,
    read_on_the_wire,
    refused_or_unseen,
    revoked_after_pinned_reads,
)
from tests.support.harness import Api

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
    read = await read_on_the_wire(api, reader, "/v1/changes")
    resp, first, pinned, primary, rid = read.resp, read.first, read.pinned, read.primary, read.request_id
    assert resp.json() == first.json()
    assert len(pinned) == 1, pinned
    assert "FROM changes" in pinned[0]
    assert "app_org()" in pinned[0]
    assert len(primary) == 1, primary  # the group commit of the audit rows
    assert "audit_append(" in primary[0]
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

    async def read(app, reader):
        answers = {}
        for params in ({}, {"types": "strength"}, {"limit": 2}):
            cursor, pages = None, []
            while True:
                rid = uuid.uuid4().hex
                resp = await reader.get("/v1/changes", params={**params, **({"since": cursor} if cursor else {})},
                                        headers={"X-Request-Id": rid})
                assert resp.status_code == 200, resp.text
                pages.append((resp.json(), audited(await events(api, request_id=rid))))
                cursor = resp.json()["next_cursor"]
                if not resp.json()["has_more"]:
                    break
            answers[str(params)] = pages
        return answers

    answers = await pinned_and_plain_alike(api, db, org, patient, READER, "/v1/changes", read)
    whole = [e for page, _ in answers["org {}"] for e in page["data"]]
    assert len(whole) == 6
    mine = [e for page, _ in answers["patient {}"] for e in page["data"]]
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
        sent, _ = await each_reader_its_own(api, readers, "/v1/changes", expected, orgs, b.id)
        assert "FROM changes" in sent[0]


async def test_a_token_without_a_search_scope_or_from_another_organization_sees_nothing_of_it(api):
    org, other = await api.org("A"), await api.org("B")
    (client, _), _ = await _caseload(api, org)
    for body in await refused_or_unseen(api, org, other, READER, ["/v1/changes"], client["id"]):
        assert body["data"] == []


async def test_a_revoked_token_is_refused_at_once_after_pinned_pages(api):
    """A token read on a pinned connection (known not revoked) and then revoked: its next page is refused at once,
    read nowhere."""
    org = await api.org("A")
    await _caseload(api, org, clients=1)
    pinned = await revoked_after_pinned_reads(api, org, READER, "/v1/changes")
    assert not any("FROM changes" in q for q in pinned)
