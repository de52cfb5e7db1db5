"""The change feed as the tests read it."""

from __future__ import annotations

import asyncio


async def drain(c, cursor, *, want, params=None, deadline=30.0):
    """Poll the feed until ``want(entries)`` holds. The feed never skips, but a change appears only once every
    transaction that started before it has finished; other tests' transactions in the same cluster (xids are
    cluster-wide) can hold it back for a moment."""
    seen: list[dict] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        page = (await c.get("/v1/changes", params={**(params or {}), **({"since": cursor} if cursor else {})})).json()
        seen += page["data"]
        cursor = page["next_cursor"]
        if not page["has_more"] and want(seen):
            return seen, cursor
        assert loop.time() < end, f"feed did not deliver in time: {len(seen)} entries"
        if not page["has_more"]:
            await asyncio.sleep(0.05)
