"""The workloads of issue 14 (W1..W6) and issue 8's bulk import (W7), each an entry of ``WORKLOADS``.

A workload turns the seeded caseload into a list of request *variants*: the HTTP request, and the values
in it that rotate from request to request (``subst``, e.g. the client id). The load generator picks
variants at random; the raw twin is built from the statements captured for ``variants[0]`` (after a warm-up
request with ``variants[-1]``) by swapping that request's ``subst`` values for the picked variant's. The capture
and the measurement build their variants in contexts of their own, and a write's variants carry the context's
``nonce``: the values swapped out are the captured request's own (``bench.run.capture_statements`` returns them),
and ``raw.build_plans`` refuses values its statements do not hold.

Write workloads (``writes=True``) give every variant a unique body (fresh external ids from
``ctx.unique()``), are sent in order rather than at random (so a run never repeats a body), and their raw twin
replays the captured statements with fresh values too: every id the service generated for the captured
request (the UUIDs of its response) is replaced by a new UUID in each replayed plan, and the rotating
values (``subst``) are swapped as substrings, so external ids inside arrays and JSON documents change too.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import orjson

from bench.loadgen import Request
from service.db import PINNED_SESSION_SETTINGS
from service.settings import PROJECT_ROOT

# W2's document, read by path by the bench and by the GraphQL tests (the bench measures what they check)
GRAPHQL_DASHBOARD = (PROJECT_ROOT / "bench" / "queries" / "dashboard.graphql").read_text()

BATCH_SIZE = 100  # W3: measurements per request
FEED_PAGE = 500  # W4: changes per page (the feed's default limit)
WRITE_VARIANTS = 2500  # W3: distinct bodies per generator run (sent in order, so none is sent twice: a run that
# would send more fails, raw.RepeatedWrites; 600 until 2026-12-06, and runs past 120 batches/s sent half twice)
BULK_CLIENTS = 125  # W7: clients per import request, 4 lines each (client, strength, goal, marker): 500 lines,
BULK_VARIANTS = 250  # one chunk of the importer (service.sync.bulk.CHUNK_LINES); distinct bodies per run (150
# until 2026-12-06: enough below 25 imports/s)


@dataclass
class Context:
    base_url: str
    token: str
    org_id: UUID
    client_ids: list[UUID]
    markers: dict[UUID, UUID] = field(default_factory=dict)  # client id -> its frequency marker (0-14 /wk)
    creds: tuple[str, str] = ("", "")  # the bench app's client_id and secret (W6)
    tokens: dict[str, str] = field(default_factory=dict)  # workload name -> token of its own organization
    orgs: dict[str, UUID] = field(default_factory=dict)  # workload name -> its own organization (the limit twin)
    caseloads: dict[str, tuple[list[UUID], dict[UUID, UUID]]] = field(default_factory=dict)  # its clients, markers
    nonce: str = field(default_factory=lambda: secrets.token_hex(4))
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _cache: dict[str, Any] = field(default_factory=dict)

    def auth(self, workload: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.get(workload or '', self.token)}"}

    def org(self, workload: str) -> UUID:
        """The organization a workload's requests go to (its own, else the seeded one)."""
        return self.orgs.get(workload, self.org_id)

    def caseload(self, workload: str) -> tuple[list[UUID], dict[UUID, UUID]]:
        """The clients and frequency markers a workload writes to (its own caseload, else the seeded one)."""
        return self.caseloads.get(workload, (self.client_ids, self.markers))

    def unique(self) -> int:
        return next(self._counter)


@dataclass(frozen=True)
class Variant:
    request: Request
    subst: dict[str, str]


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    description: str
    scopes: str  # what the bench app's token must carry for it
    variants: Callable[[Context], list[Variant]]
    target: float | None = None  # issue 14's target ratio
    writes: bool = False  # unique bodies, sent in order; the raw twin replays with fresh generated ids
    items_per_request: int = 1  # W3: measurements written, W4: changes read per request
    item_name: str = ""
    duration_factor: float = 1.0  # slow requests (seconds each at this concurrency) get a longer window
    concurrency: int | None = None  # fewer connections for requests that take a second of CPU (both sides)
    write_plans: int | None = None  # writes: distinct raw plans per run (default bench.run.RAW_WRITE_PLANS)
    own_org: bool = False  # writes into an organization of its own (made per run): the seeded one does not grow
    caseload: bool = False  # writes into a seeded caseload of its own (the seed's size, kept between runs): the
    # caseload the reads (W5's summary above all) see does not grow with every run
    pinned: bool = False  # the service answers it on a pinned connection (one statement): both twins' connections
    # get that connection's session settings (``service.db.PINNED_SESSION_SETTINGS``)

    @property
    def session(self) -> dict[str, str] | None:
        """The session settings of the connection the service answers this workload on, beyond the common ones."""
        return PINNED_SESSION_SETTINGS if self.pinned else None


def _w1(ctx: Context) -> list[Variant]:
    return [
        Variant(Request("GET", f"/v1/clients/{cid}?include=strengths", ctx.auth()), {"client_id": str(cid)})
        for cid in ctx.client_ids
    ]


def _w2(ctx: Context) -> list[Variant]:
    body = orjson.dumps({"query": GRAPHQL_DASHBOARD, "variables": {"n": 20}})
    return [Variant(Request("POST", "/graphql", {**ctx.auth(), "Content-Type": "application/json"}, body), {})]


def _w3(ctx: Context) -> list[Variant]:
    """Batches of 100 measurements of the frequency marker of 100 clients, each with a fresh external id."""
    client_ids, markers = ctx.caseload("W3")
    clients = [c for c in client_ids if c in markers] or client_ids
    out = []
    for _ in range(WRITE_VARIANTS):
        n = ctx.unique()
        prefix = f"w3.{ctx.nonce}.{n}."
        items = []
        for i in range(BATCH_SIZE):
            cid = clients[(n * BATCH_SIZE + i) % len(clients)]
            items.append({"client_id": str(cid), "marker_id": str(markers.get(cid, cid)),
                          "value": float((n + i) % 15), "observed_at": f"2026-10-{1 + i % 28:02d}T08:30:00+02:00",
                          "source": "bench-phone", "external_id": f"{prefix}{i}"})
        body = orjson.dumps({"measurements": items})
        out.append(Variant(Request("POST", "/v1/measurements/batch",
                                   {**ctx.auth("W3"), "Content-Type": "application/json"}, body), {"ext": prefix}))
    return out


def _w7(ctx: Context) -> list[Variant]:
    """NDJSON imports of a small caseload each: a client, a strength, a goal built on it and a frequency
    marker of the goal, the references by external id to the lines before, all new (fresh identifiers)."""
    out = []
    for _ in range(BULK_VARIANTS):
        prefix = f"w7.{ctx.nonce}.{ctx.unique()}."
        lines = []
        for i in range(BULK_CLIENTS):
            mrn, ref = f"{prefix}{i}", {"external_id": f"urn:bench:mrn|{prefix}{i}"}
            lines += [
                {"type": "client", "resource": {"display_name": f"Imported {i}",
                                                "identifiers": [{"system": "urn:bench:mrn", "value": mrn}]}},
                {"type": "strength", "resource": {"client_id": ref, "domain": "relational", "kind": "skill",
                                                  "label": "help-seeking",
                                                  "external_ids": [{"system": "urn:bench:str", "value": mrn}]}},
                {"type": "goal", "resource": {"client_id": ref, "description": "Walk twice a week",
                                              "strength_ids": [{"external_id": f"urn:bench:str|{mrn}"}],
                                              "external_ids": [{"system": "urn:bench:goal", "value": mrn}]}},
                {"type": "outcome_marker", "resource": {"client_id": ref, "kind": "frequency", "name": "walks",
                                                        "unit": "/wk", "min": 0, "max": 14,
                                                        "goal_id": {"external_id": f"urn:bench:goal|{mrn}"}}},
            ]
        body = b"".join(orjson.dumps(x) + b"\n" for x in lines)
        out.append(Variant(Request("POST", "/v1/bulk/import",
                                   {**ctx.auth("W7"), "Content-Type": "application/x-ndjson"}, body),
                           {"ext": prefix}))
    return out


def feed_cursors(ctx: Context, pages: int = 40) -> list[str]:
    """Cursors spread over the seeded feed: the client walks the first ``pages`` pages of 1,000 once."""
    if "cursors" not in ctx._cache:
        cursors, since = [""], ""
        with httpx.Client(base_url=ctx.base_url, headers=ctx.auth(), timeout=60) as http:
            for _ in range(pages):
                resp = http.get("/v1/changes", params={"limit": 1000, **({"since": since} if since else {})})
                resp.raise_for_status()
                page = resp.json()
                since = page["next_cursor"]
                cursors.append(since)
                if not page["has_more"]:
                    break
        ctx._cache["cursors"] = cursors[:-1] if len(cursors) > 1 else cursors
    return list(ctx._cache["cursors"])


def _decode(cursor: str) -> tuple[str, str]:
    from service.sync.changes import decode

    txid, seq = decode(cursor or None)
    return str(txid), str(seq)


def _w4(ctx: Context) -> list[Variant]:
    out = []
    for cursor in feed_cursors(ctx):
        txid, seq = _decode(cursor)
        path = f"/v1/changes?limit={FEED_PAGE}" + (f"&since={cursor}" if cursor else "")
        out.append(Variant(Request("GET", path, ctx.auth()), {"txid": txid, "seq": seq}))
    # the capture needs a page whose cursor values are distinct from the limit (variants[0]): not the very first
    return sorted(out, key=lambda v: v.subst["seq"] == "0")


def _w5(ctx: Context) -> list[Variant]:
    return [Variant(Request("GET", "/v1/progress/summary", ctx.auth()), {})]


def _w6(ctx: Context) -> list[Variant]:
    import base64

    basic = base64.b64encode(f"{ctx.creds[0]}:{ctx.creds[1]}".encode()).decode()
    return [Variant(Request("POST", "/oauth/token", {"Authorization": f"Basic {basic}",
                                                     "Content-Type": "application/x-www-form-urlencoded"},
                            b"grant_type=client_credentials"), {})]


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            name="W1", title="read one client with its strengths",
            description="GET /v1/clients/{id}?include=strengths, a random client of the seeded organization",
            scopes="system/Client.r system/Strength.s", variants=_w1, target=0.3, pinned=True,
        ),
        Workload(
            name="W2", title="GraphQL dashboard",
            description="POST /graphql: 20 clients with strengths, goals (their strengths and milestones) and "
                        "outcome markers with the latest measurement",
            scopes="system/Client.rs system/Strength.rs system/Goal.rs system/Milestone.rs "
                   "system/OutcomeMarker.rs system/Measurement.rs",
            variants=_w2, target=0.2, duration_factor=2, concurrency=4, pinned=True,
        ),
        Workload(
            name="W3", title="batch ingest of 100 measurements",
            description="POST /v1/measurements/batch, 100 new measurements (fresh external ids) per request, into a "
                        "seeded caseload of its own",
            scopes="system/Measurement.c system/OutcomeMarker.rs", variants=_w3, target=0.75, writes=True,
            items_per_request=BATCH_SIZE, item_name="measurements", caseload=True,
        ),
        Workload(
            name="W4", title="change-feed catch-up",
            description=f"GET /v1/changes?limit={FEED_PAGE}&since=<cursor>, cursors spread over the first 40,000 "
                        "changes of the seeded feed",
            scopes="system/*.s", variants=_w4, target=0.5, items_per_request=FEED_PAGE, item_name="changes",
            pinned=True,
        ),
        Workload(
            name="W5", title="caseload progress summary",
            description="GET /v1/progress/summary over the whole seeded caseload",
            scopes="system/Progress.s", variants=_w5, target=0.8, duration_factor=3, concurrency=4,
        ),
        Workload(
            name="W6", title="token issuance",
            description="POST /oauth/token, client_credentials with client_secret_basic",
            # a token must carry a scope the app holds (an app holding none gets invalid_scope): run alone, W6
            # gets the bench app this one; beside other workloads, their scopes too
            scopes="system/Client.r", variants=_w6,
        ),
        Workload(
            name="W7", title="bulk import of 500 NDJSON lines",
            description=f"POST /v1/bulk/import, {BULK_CLIENTS} new clients with a strength, a goal and a marker "
                        f"each ({4 * BULK_CLIENTS} lines, references by external id to earlier lines)",
            scopes="system/Client.cu system/Strength.cu system/Goal.cu system/OutcomeMarker.cu", variants=_w7,
            writes=True, items_per_request=4 * BULK_CLIENTS, item_name="lines", concurrency=2, write_plans=1000,
            own_org=True,
        ),
    ]
}
