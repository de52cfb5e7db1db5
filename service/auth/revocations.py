"""Revocation state without a query per request: the tokens found not revoked, kept while subscribed to the
database's ``revocation`` channel and forgotten whenever it speaks (migration 0014 notifies on every change that
can revoke an accepted token: a revoked token, a disabled app, a revoked or deleted grant or link).

Safety rests on three rules:

- Only "not revoked" is remembered, and only while the listener is subscribed (``live``). Before the first
  subscription, after a lost listener connection and until it is subscribed again, nothing is known: every check
  asks the database (``token_revoked()``, folded into the transaction's tenant statement by the unit of work).
- An answer is remembered only if no notification arrived while it was being asked (``generation``): a query
  that raced a revocation's commit cannot re-insert what the notification cleared.
- A revocation made by this process returns only after this process's own listener has heard it
  (``heard``), so the revoking request's answer follows the notification's delivery to every subscriber.

Without a listener (``enabled`` False: ``REVOCATION_CACHE=false``, or PgBouncer in transaction mode, where
LISTEN does not work) every check asks the database, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import make_url

log = structlog.get_logger("service.auth.revocations")

CHANNEL = "revocation"
MAX_KEYS = 50_000  # remembered tokens; beyond, everything is forgotten (and asked again)
HEALTH_SECONDS = 5.0  # the listener's connection is probed this often (a silently dead socket is a lost listener)
RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)

Key = tuple[str, str, str]  # (jti, client_id, grant_id or ""): the arguments of token_revoked()
SUSPEND_SECONDS = 2.0

_IN_THIS_PROCESS: weakref.WeakSet[Revocations] = weakref.WeakSet()


def revoking() -> None:
    """Called by this process's code just before it writes a revocation (a grant, a link, a token): every
    revocation cache of the process forgets what it knows and remembers nothing for ``SUSPEND_SECONDS`` (every check
    asks the database), so this process refuses the token from the commit on without waiting for the notification,
    which then clears what others remembered."""
    for revocations in list(_IN_THIS_PROCESS):
        revocations.suspend(SUSPEND_SECONDS)


class Revocations:
    def __init__(self, dsn: str | None, *, enabled: bool = True) -> None:
        self.dsn = dsn
        self.enabled = bool(enabled and dsn)
        self.live = False
        self.generation = 0
        self._ok: set[Key] = set()
        self._heard = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._stopping = False
        self._suspended_until = 0.0
        _IN_THIS_PROCESS.add(self)

    @classmethod
    def from_settings(cls, settings: Any) -> Revocations:
        url = settings.database_url
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False) if url else None
        # PgBouncer in transaction mode (a statement cache size is set) does not relay LISTEN.
        enabled = settings.revocation_cache and settings.db_statement_cache_size is None
        return cls(dsn, enabled=enabled)

    # ------------------------------------------------------------ the cache

    def known_good(self, key: Key | None) -> bool:
        """True when the token is known not to be revoked (no query needed); also for a token with no key."""
        return key is None or (self.live and key in self._ok)

    async def catch_up(self) -> None:
        """Let the event loop read the listener's socket before a cached answer is trusted: a notification that
        reached this process before the request did is applied first (one loop pass reads the socket, asyncpg then
        schedules the listener callback for the next). Three passes, no I/O of our own: microseconds."""
        for _ in range(3):
            await asyncio.sleep(0)

    def remember(self, key: Key, generation: int) -> None:
        """``key`` was found not revoked by a query started at ``generation``."""
        if not self.live or generation != self.generation or time.monotonic() < self._suspended_until:
            return
        if len(self._ok) >= MAX_KEYS:
            self._ok.clear()
        self._ok.add(key)

    def suspend(self, seconds: float) -> None:
        self._suspended_until = time.monotonic() + seconds
        self.forget()

    def forget(self) -> None:
        self.generation += 1
        self._ok.clear()

    async def heard(self, since: int, timeout: float = 2.0) -> None:  # noqa: ASYNC109 - a bound, not a deadline
        """Wait (bounded) until this process's listener has heard a notification since ``generation`` was
        ``since`` (taken before the revoking transaction began)."""
        if not self.live:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._heard:
                await self._heard.wait_for(lambda: self.generation != since or not self.live)

    # ------------------------------------------------------------ the listener

    async def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name="revocation-listener")

    async def stop(self) -> None:
        self._stopping = True
        self._down()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 2.0)
        self._conn = None

    async def subscribed(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109 - a bound, not a deadline
        """Wait (bounded) until the listener is subscribed (tests, startup)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.live and self.enabled:  # noqa: ASYNC110 - tests and startup only
                    await asyncio.sleep(0.01)
        return self.live

    def _down(self) -> None:
        if self.live:
            log.warning("revocation_listener_lost")
        self.live = False
        self.forget()
        self._wake()

    def _wake(self) -> None:
        async def notify() -> None:
            async with self._heard:
                self._heard.notify_all()

        with contextlib.suppress(RuntimeError):  # no running loop (interpreter shutdown)
            asyncio.get_running_loop().create_task(notify())

    def _on_notification(self, *_args: Any) -> None:
        self.forget()
        self._wake()

    def _on_termination(self, *_args: Any) -> None:
        self._down()

    async def _listen_forever(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                conn = await asyncpg.connect(self.dsn,
                                             server_settings={"application_name": "strengths-api-revocations"})
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("revocation_listener_connect_failed", error=type(exc).__name__)
                await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                attempt += 1
                continue
            self._conn = conn
            try:
                conn.add_termination_listener(self._on_termination)
                await conn.add_listener(CHANNEL, self._on_notification)
                # Subscribed: whatever is revoked from now on is heard. Anything remembered before is forgotten
                # (nothing is: the cache is empty while not live), and the next checks ask the database.
                self.forget()
                self.live = True
                attempt = 0
                log.info("revocation_listener_subscribed")
                while not conn.is_closed():
                    await asyncio.sleep(HEALTH_SECONDS)
                    await asyncio.wait_for(conn.execute("SELECT 1"), HEALTH_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: the listener is lost, queries take over
                log.warning("revocation_listener_failed", error=type(exc).__name__)
            finally:
                self._down()
                if not conn.is_closed():
                    conn.terminate()
                self._conn = None
            await asyncio.sleep(RETRY_SECONDS[0])
