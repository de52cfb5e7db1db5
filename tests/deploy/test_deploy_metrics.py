"""/metrics (issue 13): Prometheus text format, parsed with prometheus-client's own parser after a few requests."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.settings import Settings
from service.telemetry import metrics
from tests.support.factories import create
from tests.support.harness import Api
from tests.support.metrics import families, value

AT = "2026-11-20T08:00:00+09:00"


async def test_metrics_families_after_a_few_requests(api):
    org = await api.org()
    c = api.client(await api.token(org, "system/*.cruds"))
    phq = await create(c, "outcome-markers", kind="instrument", name="PHQ-9", instrument="phq9")
    base = {"client_id": phq["client_id"], "marker_id": phq["id"], "observed_at": AT, "source": "app"}
    before = families((await api.http.get("/metrics")).text)

    for _ in range(3):
        assert (await c.get(f"/v1/clients/{phq['client_id']}")).status_code == 200
    assert (await c.get("/v1/clients/00000000-0000-0000-0000-000000000000")).status_code == 404
    assert (await api.http.get("/no/such/path/12345")).status_code == 404
    assert (await api.http.get("/static/docs/swagger-ui.css")).status_code == 200
    r = await c.post("/v1/measurements/batch", json={"measurements": [
        {**base, "external_id": "m1", "items": [3, 3, 3, 3, 3, 3, 2, 0, 0]},  # created, severe: a safety alert
        {**base, "external_id": "m1", "items": [1, 1, 1, 1, 1, 1, 1, 1, 0]},  # duplicate in the batch
        {**base, "external_id": "m2", "items": [1, 1, 1]},  # error
    ]})
    assert [x["status"] for x in r.json()["results"]] == ["created", "duplicate", "error"]

    resp = await api.http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    after = families(resp.text)

    http = after["http_requests"]
    route = "/v1/clients/{client_id}"
    got = {s.labels["route"] for s in http if s.name == "http_requests_total"}
    assert not any("0000" in r or phq["client_id"] in r for r in got), got  # templates, never raw paths
    assert value(http, "http_requests_total", route=route, status="200", method="GET") - \
        value(before.get("http_requests", []), "http_requests_total", route=route, status="200", method="GET") == 3
    assert value(http, "http_requests_total", route=route, status="404") >= 1
    assert value(http, "http_requests_total", route=metrics.UNMATCHED, status="404") >= 1
    assert value(http, "http_requests_total", route="/static/docs/*", status="200") >= 1
    assert value(http, "http_requests_total", route="/v1/measurements/batch", status="200", method="POST") >= 1

    hist = after["http_request_duration_seconds"]
    assert value(hist, "http_request_duration_seconds_count", route=route, status="200") >= 3
    assert any(s.name == "http_request_duration_seconds_bucket" and s.labels["le"] == "+Inf" for s in hist)

    assert value(after["db_pool_size"], "db_pool_size", pool="primary") == Settings().db_pool_size
    assert value(after["db_pool_connections_in_use"], "db_pool_connections_in_use", pool="primary") >= 0

    ingest = after["ingest_measurements"]
    old = before["ingest_measurements"]
    for status in ("created", "duplicate", "error"):
        assert value(ingest, "ingest_measurements_total", status=status) - \
            value(old, "ingest_measurements_total", status=status) == 1, status
    assert value(after["safety_alerts_opened"], "safety_alerts_opened_total") - \
        value(before["safety_alerts_opened"], "safety_alerts_opened_total") == 1

    assert "webhook_outbox_backlog" in after
    assert "webhook_delivery_failures" in after
    assert "http_requests_in_progress" in after


async def test_metrics_stay_out_of_openapi_and_need_no_token(api):
    spec = (await api.http.get("/openapi.json")).json()
    assert "/metrics" not in spec["paths"]
    assert (await api.http.get("/metrics")).status_code == 200


async def test_metrics_can_be_disabled(db):
    async with Api.start(db, metrics_enabled=False) as api:
        assert (await api.http.get("/metrics")).status_code == 404
        assert (await api.http.get("/healthz")).status_code == 200


async def test_metrics_on_a_separate_port(db):
    import httpx

    from service.app import create_app
    from tests.support.servers import free_port

    port = free_port()
    app = create_app(db.settings().model_copy(update={"host": "127.0.0.1", "metrics_port": port}))
    async with Api.start(db, app=app) as api:
        assert (await api.http.get("/healthz")).status_code == 200
        assert (await api.http.get("/metrics")).status_code == 404  # not on the API port
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200
        names = {f.name for f in text_string_to_metric_families(r.text)}
        assert {"http_requests", "db_pool_size", "ingest_measurements"} <= names
        assert value(families(r.text)["webhook_outbox_backlog"], "webhook_outbox_backlog") == 0  # counted there too
        assert "webhook_outbox_backlog 0.0" in r.text
    with pytest.raises(httpx.ConnectError):  # stopped with the app
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/metrics")


async def test_webhook_backlog_counts_pending_deliveries_at_scrape_time(db):
    """Test apps run no dispatcher (tests/support/harness.py): a write with a subscription leaves its delivery pending,
    and the gauge, counted across organizations when scraped, shows it."""
    from tests.support.webhooks import subscribe

    def backlog(text: str) -> float:
        (sample,) = [s for s in families(text)["webhook_outbox_backlog"] if s.name == "webhook_outbox_backlog"]
        return sample.value

    async with Api.start(db, webhooks_allow_private_targets=True) as api:  # a local target; nothing delivers
        assert backlog((await api.http.get("/metrics")).text) == 0
        for name in ("A", "B"):
            org = await api.org(name)
            c = api.client(await api.token(org, "system/*.cruds"))
            await subscribe(c, "http://127.0.0.1:9/in", ["client.created"])
            await create(c, "clients", display_name=f"Backlog {name}")
            await create(c, "clients", display_name=f"Backlog {name}2")
        assert backlog((await api.http.get("/metrics")).text) == 4  # two organizations, two events each

        await db.fetch("UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now() "
                       "WHERE id = (SELECT id FROM webhook_deliveries LIMIT 1)")
        assert backlog((await api.http.get("/metrics")).text) == 3
