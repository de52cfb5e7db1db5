"""Per-app rate limits: a token bucket per (organization, app), answering 429 with the IETF
RateLimit fields (draft-ietf-httpapi-ratelimit-headers, structured fields) and ``Retry-After``.

By default the buckets live in this process: with N instances behind a balancer, an app gets up to N
times the quota. With ``RATE_LIMIT_STORAGE_URL=redis://...`` the quota is shared by every instance
through Redis (the ``limits`` package's sliding-window counter, atomic in Redis); if Redis cannot be
reached, the instance falls back to its own buckets and logs it, rather than refusing every request.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import structlog

from service.errors import TooManyRequests

log = structlog.get_logger("service.ratelimit")

POLICY = "perapp"
MAX_BUCKETS = 100_000


@dataclass
class Decision:
    allowed: bool
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until one request is allowed (0 when allowed)


class TokenBucketLimiter:
    def __init__(self, quota: int, window_seconds: int, clock: object = time.monotonic, *,
                 policy: str = POLICY, who: str = "app") -> None:
        self.policy, self.who = policy, who  # the RateLimit policy name; what the quota is counted for
        self.quota = quota
        self.window = window_seconds
        self.rate = quota / window_seconds if window_seconds else 0.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.quota > 0 and self.window > 0

    def take(self, key: str) -> Decision:
        now = self._clock()  # type: ignore[operator]
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.quota), now))
            tokens = min(float(self.quota), tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
                self._buckets.clear()  # bounded memory; a cleared bucket starts full
            self._buckets[key] = (tokens, now)
        reset = math.ceil((self.quota - tokens) / self.rate) if self.rate else 0
        retry = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))
        return Decision(allowed, int(tokens), reset, retry)

    def headers(self, d: Decision) -> dict[str, str]:
        return {"RateLimit-Policy": f'"{self.policy}";q={self.quota};w={self.window}',
                "RateLimit": f'"{self.policy}";r={d.remaining};t={d.retry_after if not d.allowed else d.reset}'}

    def refusal(self, headers: dict[str, str], retry_after: int) -> TooManyRequests:
        return TooManyRequests(f"This {self.who} may make {self.quota} requests per {self.window} s; retry later",
                               headers={**headers, "Retry-After": str(retry_after)})

    async def enforce(self, org_id: object, app_id: str) -> dict[str, str]:
        return self.check(org_id, app_id)

    def check(self, org_id: object, app_id: str) -> dict[str, str]:
        """The RateLimit fields for the response, or TooManyRequests (429) with them and Retry-After."""
        if not self.enabled:
            return {}
        decision = self.take(f"{org_id}:{app_id}")
        headers = self.headers(decision)
        if not decision.allowed:
            raise self.refusal(headers, decision.retry_after)
        return headers


class SharedLimiter(TokenBucketLimiter):
    """The same quota and fields, counted in Redis so that every instance shares it."""

    def __init__(self, url: str, quota: int, window_seconds: int, *, policy: str = POLICY, who: str = "app") -> None:
        from limits import RateLimitItemPerSecond
        from limits.aio.strategies import SlidingWindowCounterRateLimiter
        from limits.storage import storage_from_string

        super().__init__(quota, window_seconds, policy=policy, who=who)
        scheme = url.split("://", 1)[0]
        self.storage = storage_from_string(url if scheme.startswith("async+") else f"async+{url}")
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)
        self.item = RateLimitItemPerSecond(quota, window_seconds) if self.enabled else None

    async def enforce(self, org_id: object, app_id: str) -> dict[str, str]:
        if not self.enabled or self.item is None:
            return {}
        key = f"{org_id}:{app_id}"
        try:
            allowed = await self.strategy.hit(self.item, self.policy, key)
            stats = await self.strategy.get_window_stats(self.item, self.policy, key)
        except Exception as exc:  # noqa: BLE001 - the store is down: per-instance buckets, not an outage
            log.warning("shared rate limit store unreachable; using this instance's buckets", error=str(exc))
            return self.check(org_id, app_id)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        decision = Decision(allowed, max(0, stats.remaining), reset, 0 if allowed else reset)
        headers = self.headers(decision)
        if not allowed:
            raise self.refusal(headers, decision.retry_after)
        return headers


def make_limiter(quota: int, window_seconds: int, storage_url: str | None, *,
                 policy: str = POLICY, who: str = "app") -> TokenBucketLimiter:
    if storage_url and quota > 0 and window_seconds > 0:
        return SharedLimiter(storage_url, quota, window_seconds, policy=policy, who=who)
    return TokenBucketLimiter(quota, window_seconds, policy=policy, who=who)
