"""Per-app rate limits: a token bucket per (organization, app), answering 429 with the IETF
RateLimit fields (draft-ietf-httpapi-ratelimit-headers, structured fields) and ``Retry-After``.

The buckets live in this process: with N instances behind a balancer, an app gets up to N times the
quota. (A shared store, e.g. Redis, would make it global; it is not implemented yet.)
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from service.errors import TooManyRequests

POLICY = "perapp"
MAX_BUCKETS = 100_000


@dataclass
class Decision:
    allowed: bool
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until one request is allowed (0 when allowed)


class TokenBucketLimiter:
    def __init__(self, quota: int, window_seconds: int, clock: object = time.monotonic) -> None:
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
        return {"RateLimit-Policy": f'"{POLICY}";q={self.quota};w={self.window}',
                "RateLimit": f'"{POLICY}";r={d.remaining};t={d.retry_after if not d.allowed else d.reset}'}

    def check(self, org_id: object, app_id: str) -> dict[str, str]:
        """The RateLimit fields for the response, or TooManyRequests (429) with them and Retry-After."""
        if not self.enabled:
            return {}
        decision = self.take(f"{org_id}:{app_id}")
        headers = self.headers(decision)
        if not decision.allowed:
            raise TooManyRequests(f"This app may make {self.quota} requests per {self.window} s; retry later",
                                  headers={**headers, "Retry-After": str(decision.retry_after)})
        return headers
