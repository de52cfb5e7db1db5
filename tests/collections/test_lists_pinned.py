"""A list page (``GET /v1/<collection>``) in one round trip: PostgreSQL writes the page (``jsonread.page``) in one
statement, alone on a pinned connection once the token is known not to be revoked, gated on the session's tenant
being the token's; its audit row committed by the group commit before the response. Paging at the page size's
boundaries, filters, a cursor, a patient's list. Through HTTP, against PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support.audit import events
from tests.support.factories import create
from tests.support.gqlkit import (
    audited,
    each_reader_its_own,
    pinned_and_plain_alike,
    read_on_the_wire,
    refused_or_unseen,
    revoked_after_pinned_reads,
    statements_on_the_wire,
)
from tests.support.harness import Api

ALL = "system/*.cruds"
READER = "system/Client.s system/Strength.s"


async def _strengths(api, org, n, clients=1):
    writer = api.client(await api.token(org, ALL))
    made = []
    for _ in range(clients):
        client = await create(writer, "clients")
        made.append((client, [await create(writer, "strengths", client_id=client["id"]) for _ in range(n)]))
    return made


async def _pages(reader, path, params, rids=None):
    """Every page of a list, following next_cursor (and checking its Link header): the pages' bodies."""
    pages, cursor = [], None
    while True:
        rid = uuid.uuid4().hex
        resp = await reader.get(path, params={**params, **({"cursor": cursor} if cursor else {})},
                                headers={"X-Request-Id": rid})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages.append(body)
        if rids is not None:
            rids.append(rid)
        cursor = body["next_cursor"]
        if cursor is None:
            assert "link" not in resp.headers
            return pages
        assert resp.headers["link"].endswith('; rel="next"')
        assert f"cursor={cursor}" in resp.headers["link"]


async def test_a_page_is_one_statement_and_its_audit_row_commits_before_the_response(api):
    org = await api.org("A")
    [(client, strengths)] = await _strengths(api, org, 3)
    reader = api.client(await api.token(org, READER))
    read = await read_on_the_wire(api, reader, f"/v1/strengths?client_id={client['id']}")
    resp, first, pinned, primary, rid = read.resp, read.first, read.pinned, read.primary, read.request_id
    assert resp.json() == first.json()
    assert [s["id"] for s in resp.json()["data"]] == sorted(s["id"] for s in strengths)
    assert resp.json()["next_cursor"] is None
    assert len(pinned) == 1, pinned
    assert "app_org()" in pinned[0]
    assert len(primary) == 1, primary  # the group commit of the audit row
    assert "audit_append(" in primary[0]
    [row] = await events(api, request_id=rid)  # committed before the response
    assert (row["resource_type"], row["action"], row["org_id"]) == ("Strength", "search", org.id)
    assert sorted(map(str, row["resource_ids"])) == sorted(s["id"] for s in strengths)
    assert list(map(str, row["client_ids"])) == [client["id"]]


@pytest.mark.parametrize("limit", [1, 4, 9, 10, 11, 12])
async def test_pages_at_the_page_sizes_boundaries_list_every_record_once(api, limit):
    """Twelve strengths in pages of ``limit``: a page holding exactly the records left has no next cursor; a page
    size at, below and above the number of rows a statement reads at most (a multiple of ten, one more than the
    page size rounded up) lists each once, in order; pinned and not."""
    org = await api.org("A")
    [(client, strengths)] = await _strengths(api, org, 12)
    reader = api.client(await api.token(org, READER))
    for _ in range(2):  # the token's first use in a transaction, then pinned
        rids: list[str] = []
        pages = await _pages(reader, "/v1/strengths", {"client_id": client["id"], "limit": limit}, rids)
        assert [len(p["data"]) for p in pages] == [limit] * (12 // limit) + ([12 % limit] if 12 % limit else [])
        assert [s["id"] for p in pages for s in p["data"]] == sorted(s["id"] for s in strengths)
        for rid, page in zip(rids, pages, strict=True):  # each page audits what it showed, not the row beyond
            [row] = await events(api, request_id=rid)
            assert sorted(map(str, row["resource_ids"])) == sorted(s["id"] for s in page["data"])


async def test_pinned_and_transaction_lists_answer_and_audit_alike(api, db):
    """The same lists through an app with pinned reads and one without (DB_PINNED_POOL_SIZE=0): the same bodies and
    audit rows, for whole lists, pages of two with their cursors, filters, an identifier, and a patient's list."""
    org = await api.org("A")
    made = await _strengths(api, org, 3, clients=2)
    writer = api.client(await api.token(org, ALL))
    system = f"urn:ehr:{uuid.uuid4().hex}"
    put = await writer.put(f"/v1/clients?identifier={system}|7", json={"display_name": "Bea"})
    assert put.status_code == 201, put.text
    patient = uuid.UUID(made[0][0]["id"])
    queries = [("/v1/strengths", {}), ("/v1/strengths", {"limit": 2}), ("/v1/clients", {"limit": 2}),
               ("/v1/strengths", {"client_id": made[1][0]["id"], "status": made[1][1][0]["status"]}),
               ("/v1/clients", {"identifier": f"{system}|7"}), ("/v1/clients", {"identifier": f"{system}|8"}),
               ("/v1/strengths", {"updated_since": "2000-01-01T00:00:00Z", "limit": 4})]

    async def read(app, reader):
        answers = {}
        for path, params in queries:
            rids: list[str] = []
            pages = await _pages(reader, path, params, rids)
            answers[f"{path} {params}"] = list(zip(pages, [audited(await events(api, request_id=rid)) for rid in rids],
                                                   strict=True))
        return answers

    answers = await pinned_and_plain_alike(api, db, org, patient, READER, "/v1/strengths", read)
    listed = {k: [r["id"] for page, _ in v for r in page["data"]] for k, v in answers.items()}
    assert len(listed["org /v1/strengths {}"]) == 6
    status = made[1][1][0]["status"]
    assert listed[f"org /v1/strengths {{'client_id': '{made[1][0]['id']}', 'status': '{status}'}}"] == sorted(
        s["id"] for s in made[1][1])
    assert listed["org /v1/clients {'identifier': '" + system + "|7'}"] == [put.json()["id"]]
    assert listed["org /v1/clients {'identifier': '" + system + "|8'}"] == []
    assert set(listed["patient /v1/strengths {}"]) == {s["id"] for s in made[0][1]}
    assert listed["patient /v1/clients {'limit': 2}"] == [str(patient)]


async def test_one_connection_serves_each_tenant_its_own_list(db):
    """One pinned connection (pool of one) listed by two organizations and a patient's app in turn, and its session's
    tenant changed behind the service's back: every page is the asker's own."""
    async with Api.start(db, db_pinned_pool_size=1, db_max_overflow=0) as api:
        a, b = await api.org("A"), await api.org("B")
        made = {org.name: await _strengths(api, org, 2, clients=2) for org in (a, b)}
        own = {name: {s["id"] for _, strengths in pairs for s in strengths} for name, pairs in made.items()}
        patient = made["A"][0][0]["id"]
        readers = {"A": api.client(await api.token(a, READER)), "B": api.client(await api.token(b, READER)),
                   "patient": api.client(await api.token(a, "patient/Client.s patient/Strength.s",
                                                         patient=uuid.UUID(patient)))}
        expected = {"A": own["A"], "B": own["B"], "patient": {s["id"] for s in made["A"][0][1]}}
        orgs = {"A": a.id, "B": b.id, "patient": a.id}
        sent, _ = await each_reader_its_own(api, readers, "/v1/strengths", expected, orgs, b.id)
        assert "FROM strengths" in sent[0]


async def test_a_token_without_the_search_scope_or_from_another_organization_sees_nothing_of_it(api):
    org, other = await api.org("A"), await api.org("B")
    [(client, strengths)] = await _strengths(api, org, 1)
    urls = ["/v1/strengths", f"/v1/strengths?client_id={client['id']}"]
    for body in await refused_or_unseen(api, org, other, READER, urls, strengths[0]["id"]):
        assert body == {"data": [], "next_cursor": None}


async def test_a_bad_cursor_or_filter_is_refused_and_reads_nothing(api):
    org = await api.org("A")
    await _strengths(api, org, 1)
    reader = api.client(await api.token(org, READER))
    await reader.get("/v1/strengths")
    with statements_on_the_wire(api.app.state.ctx.pinned.engine) as pinned:
        for params in ({"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 501}, {"client_id": "x"},
                       {"updated_since": "yesterday"}, {"colour": "red"}):
            resp = await reader.get("/v1/strengths", params=params)
            assert resp.status_code in (400, 422), (params, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
        await asyncio.sleep(0)
    assert pinned == []


async def test_a_revoked_token_is_refused_at_once_after_pinned_lists(api):
    org = await api.org("A")
    await _strengths(api, org, 1)
    pinned = await revoked_after_pinned_reads(api, org, READER, "/v1/strengths")
    assert not any("strengths" in q for q in pinned)
