"""The webhook dispatcher: claims due deliveries, signs and posts them, records the outcome.

Several dispatchers (``serve`` workers, ``strengths-api worker``) may run at once. Each claims a batch
through ``webhook_claim`` (a short transaction, ``FOR UPDATE SKIP LOCKED``), which leases the rows by
moving ``next_attempt_at`` past the request timeout and stamping a lease token; the outcome is written
only under that token. A dispatcher killed mid-flight leaves its lease to expire, and another one
retries the delivery with the same ``webhook-id`` (at least once; receivers dedupe on the id).

The claim function returns ids only; each delivery is read and updated inside its organization's
tenant transaction, so row-level security applies to the dispatcher as to any request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.http import dumps
from service.db import tenant_transaction
from service.ops.polling import poll_forever
from service.settings import Settings
from service.telemetry.metrics import WEBHOOK_DELIVERY_FAILURES
from service.webhooks import targets
from service.webhooks.events import emit
from service.webhooks.signing import sign

log = logging.getLogger("strengths.webhooks")

BATCH = 20
USER_AGENT = "strengths-api-webhooks/1"

_CLAIM = text("SELECT claimed_org, claimed_id, claimed_token FROM webhook_claim(:limit, :lease)")
_LOAD = text(
    """
SELECT d.id, d.event, d.attempts, coalesce(d.redelivered_at, d.created_at) AS retry_from,
       s.id AS subscription_id, s.url, s.secret, s.previous_secret, s.previous_secret_expires_at, s.active,
       s.deleted_at, o.payload, o.created_at AS event_at
  FROM webhook_deliveries d
  JOIN webhook_subscriptions s ON s.org_id = d.org_id AND s.id = d.subscription_id
  JOIN webhook_outbox o ON o.org_id = d.org_id AND o.id = d.event_id
 WHERE d.org_id = :org AND d.id = :id AND d.lease_token = :token AND d.status = 'pending'
"""
)
_FINISH = text(
    """
UPDATE webhook_deliveries
   SET status = :status, attempts = attempts + :tried, last_attempt_at = CASE WHEN :tried = 1 THEN now()
       ELSE last_attempt_at END, last_status_code = :code, last_error = :error,
       delivered_at = CASE WHEN :status = 'delivered' THEN now() END,
       next_attempt_at = now() + make_interval(secs => :delay), lease_token = NULL
 WHERE org_id = :org AND id = :id AND lease_token = :token
"""
)
_DISABLE = text(
    """
UPDATE webhook_subscriptions SET active = false, disabled_reason = :reason, version = version + 1, updated_at = now()
 WHERE org_id = :org AND id = :id AND active AND deleted_at IS NULL
RETURNING version
"""
)


@dataclass
class Outcome:
    status: str  # pending (retry), delivered, failed
    tried: int
    code: int | None = None
    error: str | None = None
    delay: float = 0.0
    disable: str | None = None  # reason, when the subscription is to be disabled


def backoff(attempts: int, settings: Settings, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2^(attempts-1))), at least Retry-After."""
    ceiling = min(settings.webhooks_retry_max_delay_seconds,
                  settings.webhooks_retry_base_seconds * 2 ** max(attempts - 1, 0))
    delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not security
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.webhooks_retry_max_delay_seconds))
    return delay


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


class Dispatcher:
    def __init__(self, engine: AsyncEngine, settings: Settings, beat: Callable[[bool], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock  # wall time for retry windows and secret expiry (tests move it forward)
        self.beat = beat or (lambda ok: None)  # the worker's heartbeat (service/worker.py): one per iteration
        self.http = httpx.AsyncClient(
            transport=targets.transport(settings.webhooks_allow_private_targets), follow_redirects=False,
            timeout=settings.webhooks_timeout_seconds,
            headers={"user-agent": USER_AGENT},
        )
        self.lease = max(settings.webhooks_lease_seconds, int(settings.webhooks_timeout_seconds) + 5)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def run_forever(self) -> None:
        """Dispatch until cancelled; a failing database or a bug never kills the loop."""
        await poll_forever(self.run_once, self.settings.webhooks_poll_seconds, self.beat, "webhook dispatch")

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and attempt each; returns how many were claimed."""
        async with self.engine.begin() as conn:
            rows = (await conn.execute(_CLAIM, {"limit": BATCH, "lease": self.lease})).all()
        await asyncio.gather(*(self._deliver(r.claimed_org, r.claimed_id, r.claimed_token) for r in rows))
        return len(rows)

    async def _deliver(self, org_id: UUID, delivery_id: UUID, token: UUID) -> None:
        async with tenant_transaction(self.engine, org_id) as conn:
            row = (await conn.execute(_LOAD, {"org": org_id, "id": delivery_id, "token": token})).first()
        if row is None:
            return
        if not row.active or row.deleted_at is not None:
            outcome = Outcome("failed", 0, error="the subscription is disabled or deleted")
        else:
            outcome = await self._attempt(row)
        await self._record(org_id, delivery_id, token, row, outcome)

    async def _attempt(self, row: Any) -> Outcome:
        body = dumps({"type": row.event, "timestamp": row.event_at, "data": row.payload})
        msg_id = str(row.id)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": self._signatures(row, msg_id, timestamp, body),
        }
        attempts = row.attempts + 1
        try:
            # Streamed and closed unread: the receiver's body is never downloaded (no size to cap).
            async with self.http.stream("POST", row.url, content=body, headers=headers) as resp:
                code = resp.status_code
                retry_after = _retry_after(resp.headers.get("retry-after"))
        except httpx.HTTPError as exc:
            return self._retry(row, attempts, None, f"{type(exc).__name__}: {exc}"[:500], None)
        if 200 <= code < 300:
            return Outcome("delivered", 1, code)
        if code == 410:
            gone = "the endpoint answered 410 Gone"
            return Outcome("failed", 1, code, gone, disable=gone)
        return self._retry(row, attempts, code, f"HTTP {code}", retry_after if code in (429, 503) else None)

    def _signatures(self, row: Any, msg_id: str, timestamp: int, body: bytes) -> str:
        """The current secret's signature and, until it expires after a rotation, the previous one's
        (space-separated, as the Standard Webhooks spec has it for key rotation)."""
        signatures = [sign(row.secret, msg_id, timestamp, body)]
        if row.previous_secret and row.previous_secret_expires_at and self.clock() < row.previous_secret_expires_at:
            signatures.append(sign(row.previous_secret, msg_id, timestamp, body))
        return " ".join(signatures)

    def _retry(self, row: Any, attempts: int, code: int | None, error: str, retry_after: float | None) -> Outcome:
        window = timedelta(seconds=self.settings.webhooks_retry_window_seconds)
        if self.clock() - row.retry_from >= window:
            return Outcome("failed", 1, code, error, disable=f"retries exhausted after {attempts} attempts: {error}")
        return Outcome("pending", 1, code, error, delay=backoff(attempts, self.settings, retry_after))

    async def _record(self, org_id: UUID, delivery_id: UUID, token: UUID, row: Any, outcome: Outcome) -> None:
        if outcome.status != "delivered":
            WEBHOOK_DELIVERY_FAILURES.inc()
        async with tenant_transaction(self.engine, org_id) as conn:
            result = await conn.execute(_FINISH, {
                "org": org_id, "id": delivery_id, "token": token, "status": outcome.status, "tried": outcome.tried,
                "code": outcome.code, "error": outcome.error, "delay": outcome.delay,
            })
            if result.rowcount == 1 and outcome.disable:
                version = (await conn.execute(
                    _DISABLE, {"org": org_id, "id": row.subscription_id, "reason": outcome.disable[:500]}
                )).scalar()
                if version is not None:
                    await emit(conn, org_id, "subscription.disabled", "subscription", row.subscription_id,
                               "disabled", version)

