"""The workloads: each is an entry here (W2..W6 of issue 14 are added the same way).

A workload turns the seeded caseload into a list of request *variants*: the HTTP request, and the values
in it that rotate from request to request (``subst``, e.g. the client id). The load generator picks
variants at random; the raw twin is built from the statements captured for ``variants[0]`` (after a warm-up
request with ``variants[-1]``) by swapping ``variants[0].subst`` values for the picked variant's.

Write workloads should make every variant's body unique (e.g. fresh external ids from ``ctx.unique()``)
and give enough variants for the run, or replays will meet their own duplicates.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from bench.loadgen import Request


@dataclass
class Context:
    base_url: str
    token: str
    org_id: UUID
    client_ids: list[UUID]
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

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


def _w1(ctx: Context) -> list[Variant]:
    return [
        Variant(Request("GET", f"/v1/clients/{cid}?include=strengths", ctx.auth()), {"client_id": str(cid)})
        for cid in ctx.client_ids
    ]


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            name="W1",
            title="read one client with its strengths",
            description="GET /v1/clients/{id}?include=strengths, a random client of the seeded organization",
            scopes="system/Client.r system/Strength.s",
            variants=_w1,
        ),
    ]
}
