"""Helpers for the progress tests: instrument item responses for any total, series of measurements, reads."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.factories import create
from tests.support.harness import ALL  # noqa: F401 - re-exported

S_DIFF_PHQ9 = 5.5 * math.sqrt(2) * math.sqrt(1 - 0.84)
S_DIFF_GAD7 = 3.41 * math.sqrt(2) * math.sqrt(1 - 0.83)


def items(instrument: str, total: int) -> list[int]:
    """Item responses with this total; PHQ-9 item 9 stays 0 (no safety alert) and totals stay below the severe
    band unless asked, so a test opens no alert it did not mean to."""
    n, free = {"phq9": (9, 8), "gad7": (7, 7)}[instrument]
    assert 0 <= total <= 3 * free, total
    out = [0] * n
    for i in range(free):
        out[i] = min(3, total - sum(out))
    assert sum(out) == total
    return out


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def goal_with_marker(c, cid: str, *, goal: dict | None = None, **marker) -> tuple[dict, dict]:
    strength = await create(c, "strengths", client_id=cid, label="problem-solving", status="confirmed",
                            evidence=["Sorted out the rota clash at work"])
    g = await create(c, "goals", client_id=cid, strength_id=strength["id"], **(goal or {}))
    m = await create(c, "outcome-markers", client_id=cid, goal_id=g["id"], **marker)
    return g, m


async def instrument_marker(c, cid: str, instrument: str, *, goal_id: str | None = None) -> dict:
    name = {"phq9": "PHQ-9", "gad7": "GAD-7"}[instrument]
    return await create(c, "outcome-markers", client_id=cid, kind="instrument", instrument=instrument, name=name,
                        goal_id=goal_id)


async def record(c, cid: str, marker: dict, totals_at: list[tuple[float, str]]) -> None:
    """Measurements of ``marker``: instrument totals as item responses, other values as they are."""
    for value, at in totals_at:
        if marker["instrument"]:
            body = {"items": items(marker["instrument"], int(value)), "value": None}
        else:
            body = {"value": value}
        await create(c, "measurements", client_id=cid, marker_id=marker["id"], observed_at=at, **body)


async def series(c, cid: str, instrument: str, totals_at: list[tuple[int, str]], **goal: Any) -> tuple[dict, dict]:
    """A goal with an instrument marker and its measurements."""
    name = {"phq9": "PHQ-9", "gad7": "GAD-7"}[instrument]
    g, m = await goal_with_marker(c, cid, goal=goal or None, kind="instrument", instrument=instrument, name=name)
    await record(c, cid, m, totals_at)
    return g, m


async def phq9_series(c, cid: str, totals_at: list[tuple[int, str]], **goal: Any) -> tuple[dict, dict]:
    return await series(c, cid, "phq9", totals_at, **goal)


async def progress(c, cid: str, **params: Any) -> dict:
    r = await c.get(f"/v1/clients/{cid}/progress", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def goal_of(body: dict, goal_id: str) -> dict:
    return next(g for g in body["goals"] if g["goal_id"] == goal_id)


def marker_of(body: dict, goal_id: str, marker_id: str) -> dict:
    return next(m for m in goal_of(body, goal_id)["markers"] if m["marker_id"] == marker_id)
