"""Helpers of the safety tests: instrument item lists with a chosen item 9 and total, markers and bodies."""

from __future__ import annotations

from typing import Any

from tests.support.factories import NOW, create
from tests.support.harness import (
    ALL,  # noqa: F401 - re-exported
    AuthedClient,
)


def _spread(total: int, n: int) -> list[int]:
    assert 0 <= total <= 3 * n, (total, n)
    out = []
    for _ in range(n):
        out.append(min(3, total))
        total -= out[-1]
    return out


def phq9(item9: int, total: int) -> list[int]:
    """PHQ-9 responses with item 9 = ``item9`` and the total ``total`` (items 1-8 fill up the rest)."""
    return [*_spread(total - item9, 8), item9]


def gad7(total: int) -> list[int]:
    return _spread(total, 7)


async def instrument_marker(c: AuthedClient, instrument: str = "phq9", **overrides: Any) -> dict[str, Any]:
    name = {"phq9": "PHQ-9", "gad7": "GAD-7"}[instrument]
    return await create(c, "outcome-markers", kind="instrument", name=name, instrument=instrument, **overrides)


def measurement(marker: dict[str, Any], items: list[int], **extra: Any) -> dict[str, Any]:
    return {"client_id": marker["client_id"], "marker_id": marker["id"], "observed_at": NOW, "items": items, **extra}


async def alerts_of(c: AuthedClient, measurement_id: str) -> list[dict[str, Any]]:
    r = await c.get("/v1/safety-alerts", params={"measurement_id": measurement_id})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def trigger(kind: str, item9: int | None, total: int, band: str, instrument: str = "phq9") -> dict[str, Any]:
    return {"kind": kind, "instrument": instrument, "item9": item9, "total": total, "band": band}
