"""CONTRACT.md section 3: a strength becomes ``confirmed`` only with a lived example (an evidence entry or a logged
strength use), on every write path; a strength use may add itself to the evidence; ``uses_count`` and
``suppressed_in``."""

from __future__ import annotations

import orjson

from tests.support.factories import NOW, body_for, create
from tests.support.fhir import FHIR
from tests.support.gqlkit import error_codes, gql
from tests.support.safety import ALL

CODE = "confirmed_without_evidence"


async def _strengths(api) -> int:
    return int(await api.db.fetchval("SELECT count(*) FROM strengths"))


def _refused(r) -> None:
    assert r.status_code == 422, r.text
    assert r.json()["code"] == CODE
    assert [e["field"] for e in r.json()["errors"]] == ["status"]


async def test_create_needs_a_lived_example(api, c):
    for evidence in (None, [], ["   "]):
        body = await body_for(c, "strengths", status="confirmed")
        if evidence is not None:
            body["evidence"] = evidence
        before = await _strengths(api)
        _refused(await c.post("/v1/strengths", json=body))
        assert await _strengths(api) == before
    ok = await c.post("/v1/strengths", json=await body_for(c, "strengths", status="confirmed",
                                                           evidence=["Asked her sister for a lift and went"]))
    assert ok.status_code == 201, ok.text
    assert (ok.json()["status"], ok.json()["uses_count"]) == ("confirmed", 0)
    # An assessment result stays a hypothesis until then.
    assert (await create(c, "strengths", source="via_inventory"))["status"] == "hypothesis"


async def test_patch_confirms_with_evidence_or_a_logged_use_and_keeps_one(c):
    s = await create(c, "strengths")
    _refused(await c.patch(f"/v1/strengths/{s['id']}", json={"status": "confirmed"}))
    assert (await c.get(f"/v1/strengths/{s['id']}")).json()["version"] == 1
    await create(c, "strength-uses", client_id=s["client_id"], strength_id=s["id"])
    ok = await c.patch(f"/v1/strengths/{s['id']}", json={"status": "confirmed"})  # a logged use is a lived example
    assert (ok.status_code, ok.json()["uses_count"]) == (200, 1)
    other = await create(c, "strengths", status="confirmed", evidence=["Finished the course"])
    _refused(await c.patch(f"/v1/strengths/{other['id']}", json={"evidence": []}))  # it would lose its only one


async def test_put_by_external_id_creating_or_updating(c):
    body = await body_for(c, "strengths", status="confirmed")
    url, ident = "/v1/strengths", {"external_id": "urn:ehr:strength|9"}
    _refused(await c.put(url, params=ident, json=body))
    made = await c.put(url, params=ident, json={**body, "status": "hypothesis"})
    assert made.status_code == 201, made.text
    _refused(await c.put(url, params=ident, json=body))
    ok = await c.put(url, params=ident, json={**body, "evidence": ["Kept the food bank shift"]})
    assert (ok.status_code, ok.json()["status"]) == (200, "confirmed")


async def test_bulk_import_new_lines_and_updates(api, c):
    cid = (await create(c, "clients"))["id"]

    async def run(*resources: dict) -> list[dict]:
        body = b"\n".join(orjson.dumps({"type": "strength", "resource": r}) for r in resources)
        r = await c.post("/v1/bulk/import", content=body, headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        return [orjson.loads(line) for line in r.content.splitlines()]

    bare = await body_for(c, "strengths", client_id=cid, status="confirmed")
    good = {**bare, "evidence": ["Walked the dog every morning"], "label": "routine"}
    first = await run(bare, good)
    assert [r["status"] for r in first] == ["error", "created"]
    assert first[0]["problem"]["code"] == CODE
    keyed = {**bare, "status": "hypothesis", "external_ids": [{"system": "urn:ehr", "value": "s1"}]}
    assert [r["status"] for r in await run(keyed)] == ["created"]
    updated = await run({**keyed, "status": "confirmed"})  # an update of the same strength, line by line
    assert (updated[0]["status"], updated[0]["problem"]["code"]) == ("error", CODE)
    assert await _strengths(api) == 2


async def test_graphql_create_and_update(c):
    cid = (await create(c, "clients"))["id"]
    made = await gql(c, """mutation($c: UUID!) { createStrength(input: {clientId: $c, domain: personal,
                           kind: skill, label: "calm", status: confirmed}) { id } }""", {"c": cid})
    assert error_codes(made) == [("BAD_USER_INPUT", CODE)]
    s = await create(c, "strengths", client_id=cid)
    upd = await gql(c, """mutation($id: UUID!) { updateStrength(id: $id, input: {status: confirmed}) { status } }""",
                    {"id": s["id"]})
    assert error_codes(upd) == [("BAD_USER_INPUT", CODE)]
    ok = await gql(c, """mutation($id: UUID!) { updateStrength(id: $id, input: {status: confirmed,
                         evidence: ["Called a friend instead of isolating"]}) { status usesCount suppressedIn } }""",
                   {"id": s["id"]})
    assert ok["data"]["updateStrength"] == {"status": "confirmed", "usesCount": 0, "suppressedIn": None}


async def test_uses_count_is_read_only_and_counts_live_uses(c):
    s = await create(c, "strengths", suppressed_in="At family dinners, when her father is there")
    assert (s["uses_count"], s["suppressed_in"]) == (0, "At family dinners, when her father is there")
    uses = [await create(c, "strength-uses", client_id=s["client_id"], strength_id=s["id"]) for _ in range(2)]
    assert (await c.get(f"/v1/strengths/{s['id']}")).json()["uses_count"] == 2
    assert (await c.delete(f"/v1/strength-uses/{uses[0]['id']}")).status_code == 204
    listed = (await c.get("/v1/strengths", params={"client_id": s["client_id"]})).json()["data"]
    assert [x["uses_count"] for x in listed] == [1]
    got = await gql(c, "query($id: UUID!) { strength(id: $id) { usesCount } }", {"id": s["id"]})
    assert got["data"]["strength"]["usesCount"] == 1
    for write in (c.patch(f"/v1/strengths/{s['id']}", json={"uses_count": 9}),
                  c.post("/v1/strengths", json=await body_for(c, "strengths", uses_count=9))):
        r = await write
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "uses_count"
    obs = (await c.get(f"{FHIR}/Observation/strength-{s['id']}")).json()
    assert "Held back in: At family dinners, when her father is there" in [n["text"] for n in obs["note"]]


async def test_a_strength_use_adds_itself_to_the_evidence_once(api, c):
    s = await create(c, "strengths")
    r = await c.post("/v1/strength-uses", json=await body_for(
        c, "strength-uses", client_id=s["client_id"], strength_id=s["id"], add_to_evidence=True))
    assert r.status_code == 201, r.text
    strength = (await c.get(f"/v1/strengths/{s['id']}")).json()
    assert strength["evidence"] == ["2026-11-20: Asked a coworker to swap shifts Result: Got the shift, felt capable"]
    assert strength["version"] == 2  # an update of the strength, with its history and strength.updated
    assert [v["action"] for v in (await c.get(f"/v1/history/strengths/{s['id']}")).json()["data"]] == \
        ["created", "updated"]
    confirmed = await c.patch(f"/v1/strengths/{s['id']}", json={"status": "confirmed"})
    assert confirmed.status_code == 200
    later = await create(c, "strength-uses", client_id=s["client_id"], strength_id=s["id"],
                         situation="Said no to an extra shift", result=None, occurred_at=NOW)
    assert len((await c.get(f"/v1/strengths/{s['id']}")).json()["evidence"]) == 1
    await c.patch(f"/v1/strength-uses/{later['id']}", json={"add_to_evidence": True})  # once, when it turns true
    await c.patch(f"/v1/strength-uses/{later['id']}", json={"rating": 8})
    await c.patch(f"/v1/strength-uses/{later['id']}", json={"add_to_evidence": True})
    assert (await c.get(f"/v1/strengths/{s['id']}")).json()["evidence"][1:] == ["2026-11-20: Said no to an extra shift"]


async def test_adding_to_evidence_needs_the_strengths_scope_and_room(api, org, c):
    s = await create(c, "strengths")
    logger = api.client(await api.token(org, "system/StrengthUse.c"))
    body = await body_for(c, "strength-uses", client_id=s["client_id"], strength_id=s["id"], add_to_evidence=True)
    refused = await logger.post("/v1/strength-uses", json=body)
    assert refused.status_code == 403
    assert "Strength.u" in refused.headers["www-authenticate"]
    assert (await logger.post("/v1/strength-uses", json={**body, "add_to_evidence": False})).status_code == 201
    full = await create(c, "strengths", client_id=s["client_id"], evidence=[f"Example {i}" for i in range(50)])
    r = await c.post("/v1/strength-uses", json={**body, "strength_id": full["id"]})
    assert (r.status_code, r.json()["code"], r.json()["errors"][0]["field"]) == (422, "evidence_full",
                                                                                 "add_to_evidence")
    assert await api.db.fetchval("SELECT count(*) FROM strength_uses") == 1
    other = api.client(await api.token(await api.org("B"), ALL))
    assert (await other.get(f"/v1/strengths/{s['id']}")).status_code == 404
    assert (await other.post("/v1/strength-uses", json=body)).status_code == 422  # another org's client: unknown


async def test_bulk_import_adds_a_use_to_the_evidence_in_the_chunk(api, org, c):
    cid = (await create(c, "clients"))["id"]
    strength = await body_for(c, "strengths", client_id=cid, external_ids=[{"system": "urn:ehr", "value": "s7"}])
    use = await body_for(c, "strength-uses", client_id=cid, strength_id={"external_id": "urn:ehr|s7"},
                         add_to_evidence=True)

    async def run(client, *lines: tuple[str, dict]) -> list[dict]:
        body = b"\n".join(orjson.dumps({"type": t, "resource": r}) for t, r in lines)
        r = await client.post("/v1/bulk/import", content=body, headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        return [orjson.loads(line) for line in r.content.splitlines()]

    done = await run(c, ("strength", strength), ("strength_use", use))
    assert [r["status"] for r in done] == ["created", "created"]
    got = (await c.get(f"/v1/strengths/{done[0]['id']}")).json()
    assert got["uses_count"] == 1
    assert got["evidence"] == ["2026-11-20: Asked a coworker to swap shifts Result: Got the shift, felt capable"]
    logger = api.client(await api.token(org, "system/StrengthUse.c"))
    refused = await run(logger, ("strength_use", {**use, "strength_id": done[0]["id"]}),
                        ("strength_use", {**use, "strength_id": done[0]["id"], "add_to_evidence": False}))
    assert [(r["status"], r.get("problem", {}).get("status")) for r in refused] == [("error", 403), ("created", None)]
