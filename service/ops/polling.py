"""The loop of the background workers (webhook dispatcher, bulk export runner): work until cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("service.worker")


async def poll_forever(run_once: Callable[[], Awaitable[int | bool]], idle_seconds: float,
                       beat: Callable[[bool], None], what: str) -> None:
    """Call ``run_once`` until cancelled, sleeping ``idle_seconds`` whenever it found nothing to do; a failing
    database or a bug is logged and never kills the loop; ``beat`` tells the worker's heartbeat each turn."""
    while True:
        try:
            busy = await run_once()
            beat(True)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep running after any failure
            log.exception(f"{what} failed")
            busy = False
            beat(False)
        if not busy:
            await asyncio.sleep(idle_seconds)
