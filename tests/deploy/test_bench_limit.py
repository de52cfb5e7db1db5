"""The bench's limit twins (bench/limit.py) return the service's response for the same request: W1, W2 and W4 the
same JSON, W3 and W7 the same results (index or line, and status) for a batch or an import like it, and rows stored
the same way, W6 a token with the same header and claims that the service accepts. Run on a small bench seed in the
test database: the service in-process, the twin's statement as the owner role."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from uuid import UUID

import orjson

from bench import limit
from bench.loadgen import Request
from bench.seed import ensure_seed, frequency_markers
from bench.workloads import WORKLOADS, Context, Variant
from service.auth.assertions import unverified_parts
from tests.support.harness import Org

TIMED = ("iat", "nbf", "exp", "jti")
STORED = ("client_id", "marker_id", "value", "observed_at", "observed_offset", "source", "items", "note", "version")


async def setup(api: Any) -> Context:
    seed = await ensure_seed(api.db.dsn(), 4)
    scopes = " ".join(sorted({s for name in limit.LIMITS for s in WORKLOADS[name].scopes.split()}))
    token = await api.token(Org(seed.org_id, "bench"), scopes)
    return Context("http://testserver", token, seed.org_id, seed.client_ids,
                   markers=await frequency_markers(api.db.dsn(), seed.org_id))


async def service(api: Any, v: Variant) -> Any:
    r = v.request
    resp = await api.http.request(r.method, r.path, headers=r.headers, content=r.body)
    assert resp.status_code < 300, resp.text
    return resp.json()


async def twin(api: Any, name: str, ctx: Context, v: Variant) -> Any:
    [[(sql, args)]] = limit.plans(name, ctx, [v])
    conn = await api.db.connect()
    try:
        return orjson.loads(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def test_w1_and_w2_twins_answer_as_the_service(api):
    ctx = await setup(api)
    for name in ("W1", "W2"):
        variants = WORKLOADS[name].variants(ctx)
        for v in variants[:2]:
            assert await twin(api, name, ctx, v) == await service(api, v), name


async def test_w3_twin_answers_as_the_service_and_stores_the_same(api):
    ctx = await setup(api)
    batch = WORKLOADS["W3"].variants(ctx)[0]
    by_service = await service(api, batch)
    by_twin = await twin(api, "W3", ctx, batch)  # the same batch, its external ids suffixed by the twin's plan
    assert [(r["index"], r["status"]) for r in by_twin["results"]] == \
        [(r["index"], r["status"]) for r in by_service["results"]]
    assert {r["status"] for r in by_twin["results"]} == {"created"}
    rows = await api.db.fetch(f"SELECT id, {', '.join(STORED)} FROM measurements WHERE id = ANY($1::uuid[])",
                              [UUID(r["id"]) for r in by_service["results"] + by_twin["results"]])
    stored = {str(r["id"]): tuple(r[c] for c in STORED) for r in rows}
    assert [stored[r["id"]] for r in by_twin["results"]] == [stored[r["id"]] for r in by_service["results"]]


async def test_w4_twin_answers_as_the_service(api):
    """Pages of the seeded feed from cursors spread over it (the first page, from no cursor, and an empty page past
    its end included), full ones (``has_more``) and the last. The feed stops below the oldest running transaction
    of the cluster, which other tests' transactions move: a page is compared again until both sides read it with
    the same horizon."""
    ctx = await setup(api)
    cursors, since = [""], ""
    while True:
        page = (await api.http.get("/v1/changes", params={"limit": 100, **({"since": since} if since else {})},
                                   headers=ctx.auth())).json()
        since = page["next_cursor"]
        cursors.append(since)
        if not page["has_more"]:
            break
    assert len(cursors) >= 4
    ctx._cache["cursors"] = cursors  # what bench.workloads.feed_cursors finds over HTTP (pages of 1,000 there)
    variants = WORKLOADS["W4"].variants(ctx)
    variants += [Variant(Request("GET", f"/v1/changes?limit=100&since={c}", ctx.auth()), {}) for c in cursors[1:3]]
    pages = []
    for v in variants:
        for _ in range(50):
            by_service = await service(api, v)
            if await twin(api, "W4", ctx, v) == by_service:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{v.request.path}: the twin's page differs from the service's")
        pages.append(by_service)
    assert {p["has_more"] for p in pages} == {True, False}
    assert min(len(p["data"]) for p in pages) == 0
    assert max(len(p["data"]) for p in pages) > 100


MAPPED = {"clients": "client", "strengths": "strength", "goals": "goal", "outcome_markers": "outcome_marker"}


async def test_w7_twin_answers_as_the_service_and_stores_the_same(api):
    """The same import (500 lines) by the service and by the twin (its identifiers suffixed by the twin's plan):
    the same line numbers and statuses, and line by line the same stored record and identifiers, the references
    naming the same lines."""
    ctx = await setup(api)
    v = WORKLOADS["W7"].variants(ctx)[0]
    r = v.request
    resp = await api.http.request(r.method, r.path, headers=r.headers, content=r.body)
    assert resp.status_code == 200, resp.text
    by_service = [orjson.loads(line) for line in resp.text.splitlines()]
    [[(sql, args)]] = limit.plans("W7", ctx, [v])
    suffix = args[-1]
    by_twin = [orjson.loads(line) for line in (await api.db.fetchval(sql, *args)).splitlines()]
    assert [(x["line"], x["status"]) for x in by_twin] == [(x["line"], x["status"]) for x in by_service]
    assert {x["status"] for x in by_twin} == {"created"}
    assert len(by_twin) == 500
    line_of = {UUID(x["id"]): x["line"] for x in by_service + by_twin}

    def same(value: Any) -> Any:
        """A stored value with record ids as the lines that made them and the twin's suffix taken off."""
        if isinstance(value, UUID):
            return ("line", line_of.get(value, value))
        if isinstance(value, list):
            return [same(x) for x in value]
        if isinstance(value, str):
            return value.replace(suffix, "")
        return value

    def stored(rows: list[Any], skip: tuple[str, ...]) -> dict[Any, Any]:
        return {line_of[r["id"]]: {k: same(v) for k, v in dict(r).items() if k not in skip} for r in rows}

    lines = {"service": {}, "twin": {}}
    for table in MAPPED:
        for side, results in (("service", by_service), ("twin", by_twin)):
            rows = await api.db.fetch(f"SELECT * FROM {table} WHERE id = ANY($1::uuid[])",
                                      [UUID(x["id"]) for x in results])
            lines[side].update(stored(rows, ("id", "created_at", "updated_at")))
    assert len(lines["twin"]) == 500
    assert lines["twin"] == lines["service"]
    index = {}
    for side, results in (("service", by_service), ("twin", by_twin)):
        rows = await api.db.fetch("SELECT * FROM external_ids WHERE record_id = ANY($1::uuid[])",
                                  [UUID(x["id"]) for x in results])
        index[side] = sorted((same(r["record_id"]), r["collection"], r["system"], same(r["value"]),
                              same(r["client_id"]), r["compartment"]) for r in rows)
    assert len(index["twin"]) == 375  # a client's, a strength's and a goal's identifier per client
    assert index["twin"] == index["service"]

    # A later import naming a record of this one by its identifier: resolved through the external-id index.
    first = orjson.loads(r.body.splitlines()[0])["resource"]["identifiers"][0]
    later = orjson.dumps({"type": "strength", "resource": {
        "client_id": {"external_id": f"{first['system']}|{first['value']}"}, "domain": "practical", "kind": "skill",
        "label": "cooking"}}).decode()
    [made] = [orjson.loads(line) for line in (await api.db.fetchval(sql, args[0], later, suffix)).splitlines()]
    assert made["line"] == 1
    assert await api.db.fetchval("SELECT client_id FROM strengths WHERE id = $1", UUID(made["id"])) == \
        UUID(by_twin[0]["id"])


async def test_w6_twin_signs_the_token_the_service_issues(api):
    """The same token request: the twin's statement finds the app for the Basic credentials (none for a wrong
    secret), and its signer writes the body the service writes, a token with the same header and claims (but its
    own jti and times), signed with the service's key: the service accepts it."""
    ctx = await setup(api)
    creds = await api.register_app(Org(ctx.org_id, "bench"), "system/Client.rs system/Strength.s")
    ctx.creds = (creds["client_id"], creds["client_secret"])
    [v] = WORKLOADS["W6"].variants(ctx)
    by_service = await service(api, v)
    [[(sql, args)]] = limit.plans("W6", ctx, [v])
    sign = limit.signer(ctx, await limit.signing_jwk(api.db.dsn(), api.db.settings()))
    by_twin = orjson.loads(sign(await api.db.fetch(sql, *args)))
    token = by_twin.pop("access_token")
    assert by_twin == {k: x for k, x in by_service.items() if k != "access_token"}
    (head, claims), (service_head, service_claims) = (unverified_parts(t) for t in (token, by_service["access_token"]))
    assert head == service_head
    assert {k: x for k, x in claims.items() if k not in TIMED} == \
        {k: x for k, x in service_claims.items() if k not in TIMED}
    assert claims["exp"] - claims["iat"] == service_claims["exp"] - service_claims["iat"] == by_twin["expires_in"]
    assert claims["jti"] != service_claims["jti"]
    read = await api.http.get("/v1/clients?limit=1", headers={"Authorization": f"Bearer {token}"})
    assert read.status_code == 200, read.text
    wrong = base64.b64encode(f"{creds['client_id']}:not-the-secret".encode()).decode()
    assert await api.db.fetch(sql, f"Basic {wrong}") == []
