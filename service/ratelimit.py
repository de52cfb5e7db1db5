"""Rate limits. Per-app: a token bucket per (organization, app), answering 429 with the IETF
RateLimit fields (draft-ietf-httpapi-ratelimit-headers, structured fields) and ``Retry-After``.

By default the buckets live in this process: with N instances behind a balancer, an app gets up to N
times the quota. With ``RATE_LIMIT_STORAGE_URL=redis://...`` the quota is shared by every instance
through Redis (the ``limits`` package's sliding-window counter, atomic in Redis); if Redis cannot be
reached, the instance falls back to its own buckets and logs it, rather than refusing every request.

The token endpoints' abuse limit (``FailedAttempts``) counts failed authentications per source address in
the same kind of buckets.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

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
    def __init__(self, quota: int, window_seconds: int, clock: Callable[[], float] = time.monotonic, *,
                 policy: str = POLICY, who: str = "app", detail: str | None = None) -> None:
        self.policy, self.who = policy, who  # the RateLimit policy name; what the quota is counted for
        self.detail = detail or "This {who} may make {quota} requests per {window} s; retry later"
        self.quota = quota
        self.window = window_seconds
        self.rate = quota / window_seconds if window_seconds else 0.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.quota > 0 and self.window > 0

    def take(self, key: str, *, spend: bool = True) -> Decision:
        """Take one request from ``key``'s bucket if it has one (``spend=False``: only look)."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.quota), now))
            tokens = min(float(self.quota), tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed and spend:
                tokens -= 1.0
            if spend or key in self._buckets:
                if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
                    self._buckets.clear()  # bounded memory; a cleared bucket starts full
                self._buckets[key] = (tokens, now)
        reset = math.ceil((self.quota - tokens) / self.rate) if self.rate else 0
        retry = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))
        return Decision(allowed, int(tokens), reset, retry)

    async def peek(self, key: str) -> Decision:
        """Whether ``key`` has a request left, spending nothing."""
        return self.take(key, spend=False)

    async def spend(self, key: str) -> Decision:
        return self.take(key)

    def headers(self, d: Decision) -> dict[str, str]:
        return {"RateLimit-Policy": f'"{self.policy}";q={self.quota};w={self.window}',
                "RateLimit": f'"{self.policy}";r={d.remaining};t={d.retry_after if not d.allowed else d.reset}'}

    def refusal(self, headers: dict[str, str], retry_after: int) -> TooManyRequests:
        return TooManyRequests(self.detail.format(who=self.who, quota=self.quota, window=self.window),
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

    def __init__(self, url: str, quota: int, window_seconds: int, *, policy: str = POLICY, who: str = "app",
                 detail: str | None = None) -> None:
        from limits import RateLimitItemPerSecond
        from limits.aio.strategies import SlidingWindowCounterRateLimiter
        from limits.storage import storage_from_string

        super().__init__(quota, window_seconds, policy=policy, who=who, detail=detail)
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

    async def _shared(self, key: str, *, spend: bool) -> Decision:
        if not self.enabled or self.item is None:
            return Decision(True, self.quota, 0, 0)
        try:
            allowed = await (self.strategy.hit if spend else self.strategy.test)(self.item, self.policy, key)
            stats = await self.strategy.get_window_stats(self.item, self.policy, key)
        except Exception as exc:  # noqa: BLE001 - the store is down: per-instance buckets, not an outage
            log.warning("shared rate limit store unreachable; using this instance's buckets", error=str(exc))
            return self.take(key, spend=spend)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, max(0, stats.remaining), reset, 0 if allowed else reset)

    async def peek(self, key: str) -> Decision:
        return await self._shared(key, spend=False)

    async def spend(self, key: str) -> Decision:
        return await self._shared(key, spend=True)


def make_limiter(quota: int, window_seconds: int, storage_url: str | None, *,
                 policy: str = POLICY, who: str = "app", detail: str | None = None) -> TokenBucketLimiter:
    if storage_url and quota > 0 and window_seconds > 0:
        return SharedLimiter(storage_url, quota, window_seconds, policy=policy, who=who, detail=detail)
    return TokenBucketLimiter(quota, window_seconds, policy=policy, who=who, detail=detail)


def address_key(host: str | None) -> str:
    """A source address as the failure buckets count it: an IPv4 address, or an IPv6 address's /64 (one
    subscriber's allocation, so cycling through it does not buy fresh buckets)."""
    if not host:
        return "-"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Attempt:
    """One OAuth request in flight under ``FailedAttempts``: ``failed()`` when its credential did not hold."""

    def __init__(self) -> None:
        self.did_fail = False

    def failed(self) -> None:
        self.did_fail = True


class FailedAttempts:
    """The token endpoints' abuse limit (CONTRACT.md section 2): failed authentications are counted per source
    address, and per client id only among that address's attempts. A request is refused (429) before anything
    is checked only when its own address has failed too often (overall, or with that client id); a request
    that authenticates spends nothing here, so knowing an app's client_id (not a secret) lets nobody lock the
    app out from elsewhere. Failures are a wrong secret or assertion, and an unknown, expired, used or
    mismatched link code, authorization code or refresh token.

    Attempts still in flight from an address count as provisional failures of that address (in this process),
    so a burst of concurrent guesses cannot all pass the check before the first of them is counted: at most
    TOKEN_FAILURE_LIMIT of one address's requests are in flight at once per instance. Not per client id, so
    an app's backend refreshing many patients' tokens at once from one address is not refused for that."""

    def __init__(self, per_address: TokenBucketLimiter, per_client: TokenBucketLimiter) -> None:
        self.per_address, self.per_client = per_address, per_client
        self._pending: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> FailedAttempts:
        window, url = settings.rate_limit_window_seconds, settings.rate_limit_storage_url
        detail = "Too many failed authentications from this {who} ({quota} per {window} s); retry later"
        return cls(make_limiter(settings.token_failure_limit, window, url, policy="oauthfailures",
                                who="address", detail=detail),
                   make_limiter(settings.token_failure_limit_per_client, window, url, policy="oauthfailuresperclient",
                                who="address with this client id", detail=detail))

    def _buckets(self, address: str, client_id: str | None) -> list[tuple[TokenBucketLimiter, str]]:
        buckets = [(self.per_address, f"addr:{address}")]
        if client_id:
            buckets.append((self.per_client, f"addr:{address}|client:{client_id[:200]}"))
        return [(limiter, key) for limiter, key in buckets if limiter.enabled]

    @asynccontextmanager
    async def attempt(self, address: str, client_id: str | None) -> AsyncIterator[Attempt]:
        """Admit one request (else TooManyRequests: 429 with the RateLimit fields and Retry-After); when it
        ends, a failed one spends from this address's buckets."""
        buckets = self._buckets(address, client_id)
        held = f"addr:{address}" if self.per_address.enabled else None
        for limiter, key in buckets:
            decision = await limiter.peek(key)
            left = decision.remaining - (self._pending.get(key, 0) if key == held else 0)
            if left < 1:
                retry = max(1, decision.retry_after)
                raise limiter.refusal(limiter.headers(Decision(False, 0, decision.reset, retry)), retry)
        if held:
            self._pending[held] = self._pending.get(held, 0) + 1
        attempt = Attempt()
        try:
            yield attempt
        finally:
            if attempt.did_fail:
                for limiter, key in buckets:
                    await limiter.spend(key)
            if held:
                still = self._pending.get(held, 1) - 1
                if still > 0:
                    self._pending[held] = still
                else:
                    self._pending.pop(held, None)
