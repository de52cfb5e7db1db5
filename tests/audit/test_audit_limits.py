"""Abuse limits and hardening: body size, security headers, CORS off by default, per-app rate limits."""

from __future__ import annotations

import re

import pytest

from tests.support.harness import Api

HUGE = b'{"display_name": "' + b"x" * 5000 + b'"}'


async def test_a_declared_oversized_body_is_refused_before_it_is_read(db):
    async with Api.start(db, max_body_bytes=1000) as api:
        c = api.client(await api.token(await api.org(), "system/*.cruds"))
        resp = await c.post("/v1/clients", content=HUGE, headers={"Content-Type": "application/json"})
        assert resp.status_code == 413
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["status"] == 413
        assert await db.fetchval("SELECT count(*) FROM clients") == 0


async def test_a_streamed_oversized_body_is_counted_and_refused(db):
    async def chunks():
        for _ in range(10):
            yield b"x" * 500

    async with Api.start(db, max_body_bytes=1000) as api:
        c = api.client(await api.token(await api.org(), "system/*.cruds"))
        resp = await c.post("/v1/clients", content=chunks(), headers={"Content-Type": "application/json"})
        assert resp.status_code == 413, resp.text
        assert resp.json()["code"] == "payload_too_large"
        gql = await c.post("/graphql", content=chunks(), headers={"Content-Type": "application/json"})
        assert gql.status_code == 413


async def test_the_batch_route_has_its_own_larger_limit(db):
    async with Api.start(db, max_body_bytes=1000) as api:
        c = api.client(await api.token(await api.org(), "system/*.cruds"))
        body = {"measurements": [{"note": "x" * 100}] * 20}  # > 1000 bytes, invalid items: answered, not 413
        resp = await c.post("/v1/measurements/batch", json=body)
        assert resp.status_code != 413


async def test_security_headers_and_no_cors_by_default(api):
    c = api.client(await api.token(await api.org(), "system/*.cruds"))
    resp = await c.get("/v1/clients", headers={"Origin": "https://evil.example"})
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["content-security-policy"].startswith("default-src 'none'")
    assert "access-control-allow-origin" not in resp.headers
    docs = await api.http.get("/docs")
    assert "script-src 'self'" in docs.headers["content-security-policy"]


async def test_cors_when_configured_names_only_the_allowed_origin(db):
    async with Api.start(db, cors_origins=["https://dashboard.example"]) as api:
        ok = await api.http.options("/v1/clients", headers={
            "Origin": "https://dashboard.example", "Access-Control-Request-Method": "GET"})
        assert ok.headers["access-control-allow-origin"] == "https://dashboard.example"
        assert "access-control-allow-credentials" not in ok.headers
        other = await api.http.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_per_app_rate_limit_answers_429_with_ratelimit_fields(db):
    async with Api.start(db, rate_limit_requests=3, rate_limit_window_seconds=60) as api:
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        first = await c.get("/v1/clients")
        assert first.headers["ratelimit-policy"] == '"perapp";q=3;w=60'
        assert re.fullmatch(r'"perapp";r=2;t=\d+', first.headers["ratelimit"])
        for _ in range(2):
            assert (await c.get("/v1/clients")).status_code == 200
        limited = await c.get("/v1/clients")
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        t = int(re.fullmatch(r'"perapp";r=0;t=(\d+)', limited.headers["ratelimit"]).group(1))
        assert int(limited.headers["retry-after"]) >= t >= 1
        other_app = api.client(await api.token(org, "system/Client.rs"))  # another app: its own bucket
        assert (await other_app.get("/v1/clients")).status_code == 200


REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_reachable() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_reachable(), reason="no Redis at 127.0.0.1:6379 (RATE_LIMIT_STORAGE_URL needs one)")
async def test_with_redis_two_instances_share_one_quota(db):
    """Two app instances (as behind a balancer) configured with the same Redis: one quota, not two."""
    limits = {"rate_limit_requests": 4, "rate_limit_window_seconds": 60, "rate_limit_storage_url": REDIS_URL}
    async with Api.start(db, **limits) as one, Api.start(db, **limits) as two:
        token = await one.token(await one.org(), "system/*.cruds")  # a fresh org: a fresh key in Redis
        a, b = one.client(token), two.client(token)
        statuses = [(await (a if i % 2 else b).get("/v1/clients")).status_code for i in range(4)]
        assert statuses == [200] * 4
        first = await a.get("/v1/clients")
        assert first.status_code == 429, first.text  # in-process buckets would allow 4 per instance
        assert first.headers["ratelimit-policy"] == '"perapp";q=4;w=60'
        t = int(re.fullmatch(r'"perapp";r=0;t=(\d+)', first.headers["ratelimit"]).group(1))
        assert int(first.headers["retry-after"]) >= t >= 1
        assert (await b.get("/v1/clients")).status_code == 429


async def test_unreachable_redis_falls_back_to_per_instance_buckets(db):
    limits = {"rate_limit_requests": 2, "rate_limit_window_seconds": 60,
              "rate_limit_storage_url": "redis://127.0.0.1:9/0"}  # nothing listens on the discard port
    async with Api.start(db, **limits) as api:
        c = api.client(await api.token(await api.org(), "system/*.cruds"))
        assert [(await c.get("/v1/clients")).status_code for _ in range(3)] == [200, 200, 429]
