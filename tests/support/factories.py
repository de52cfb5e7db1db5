"""Small async factories: a valid body for every collection, creating what it references first."""

from __future__ import annotations

import itertools
from typing import Any

from tests.support.harness import AuthedClient

_n = itertools.count(1)
NOW = "2026-11-20T09:30:00+01:00"


async def client_with(writer: AuthedClient, kinds: tuple[str, ...] = ("strengths", "strengths", "goals")) -> tuple[
        dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """A new client and one child record of each kind in ``kinds`` (a kind twice: two), by kind."""
    client = await create(writer, "clients")
    children: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for kind in kinds:
        children[kind].append(await create(writer, kind, client_id=client["id"]))
    return client, children


async def create(c: AuthedClient, collection: str, **overrides: Any) -> dict[str, Any]:
    body = await body_for(c, collection, **overrides)
    r = await c.post(f"/v1/{collection}", json=body)
    assert r.status_code == 201, (collection, r.status_code, r.text)
    return r.json()  # type: ignore[no-any-return]


async def _client_id(c: AuthedClient, overrides: dict[str, Any]) -> str:
    if "client_id" in overrides:
        return str(overrides.pop("client_id"))
    return str((await create(c, "clients"))["id"])


async def body_for(c: AuthedClient, collection: str, **o: Any) -> dict[str, Any]:
    n = next(_n)
    if collection == "clients":
        return {"display_name": f"Client {n}", "preferred_future": "Back at work and calling my sister weekly", **o}
    if collection == "webhook-subscriptions":  # the organization's, not a client's
        return {"url": "https://93.184.216.34/hook", "events": ["strength.created", "safety_alert.opened"], **o}
    cid = await _client_id(c, o)
    if collection == "strengths":
        body = {"client_id": cid, "domain": "relational", "kind": "skill", "label": f"help-seeking {n}",
                "description": "Asks a friend for help and follows through on the plan they make"}
    elif collection == "protective-factors":
        body = {"client_id": cid, "category": "relationship", "description": "Sister calls every Sunday"}
    elif collection == "exceptions":
        sid = o.pop("strength_id", None) or (await create(c, "strengths", client_id=cid))["id"]
        body = {"client_id": cid, "problem": "panic on the bus", "description": "Calmer when listening to music",
                "conditions": ["reduced_triggers"], "strength_ids": [sid], "observed_at": NOW}
    elif collection == "goals":
        sid = o.pop("strength_id", None) or (await create(c, "strengths", client_id=cid))["id"]
        body = {"client_id": cid, "description": "Take the bus to work three days a week", "strength_ids": [sid],
                "lifecycle": "active"}
    elif collection == "milestones":
        gid = o.pop("goal_id", None) or (await create(c, "goals", client_id=cid))["id"]
        body = {"client_id": cid, "goal_id": gid, "title": "Ride two stops with a friend",
                "completion_criteria": "Rode two stops with a friend on two separate days", "sequence": 1}
    elif collection == "outcome-markers":
        body = {"client_id": cid, "kind": "frequency", "name": "Bus rides per week", "unit": "/wk", "min": 0,
                "max": 50, "direction": "higher_is_better"}
    elif collection == "measurements":
        mid = o.pop("marker_id", None) or (await create(c, "outcome-markers", client_id=cid))["id"]
        body = {"client_id": cid, "marker_id": mid, "value": 3, "observed_at": NOW}
    elif collection == "strength-uses":
        sid = o.pop("strength_id", None) or (await create(c, "strengths", client_id=cid))["id"]
        body = {"client_id": cid, "strength_id": sid, "situation": "Asked a coworker to swap shifts",
                "result": "Got the shift, felt capable", "rating": 7, "occurred_at": NOW}
    elif collection == "experiments":
        sid = o.pop("strength_id", None) or (await create(c, "strengths", client_id=cid))["id"]
        body = {"client_id": cid, "strength_id": sid, "plan": "Ask my sister to ride the bus with me on Tuesday"}
    elif collection == "safety-alerts":
        body = {"client_id": cid, "reason": "Clinician concern after session"}
    else:
        raise KeyError(collection)
    body.update(o)
    return body


# A field each collection can change with PATCH, and a status-like filter where it has one.
PATCHES: dict[str, dict[str, Any]] = {
    "clients": {"preferred_future": "Riding the bus without thinking about it"},
    "strengths": {"status": "confirmed", "evidence": ["Called the crisis line instead of isolating"]},
    "protective-factors": {"status": "at_risk"},
    "exceptions": {"description": "Calmer when a friend is on the bus"},
    "goals": {"achievement": "improving"},
    "milestones": {"status": "in_progress"},
    "outcome-markers": {"name": "Bus rides (per week)"},
    "measurements": {"note": "Reported in session"},
    "strength-uses": {"rating": 9},
    "experiments": {"status": "done", "result": "Rode with my sister", "debrief": "Company helps"},
    "safety-alerts": {"status": "acknowledged"},
}

COLLECTIONS = list(PATCHES)

# Routes outside the collection machinery, owned by the organization (no client_id): a PATCH body each.
ORG_PATCHES: dict[str, dict[str, Any]] = {
    "webhook-subscriptions": {"active": False},
}
