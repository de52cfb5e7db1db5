"""ReDoc at /redoc beside Swagger UI at /docs, served offline; the webhooks section declares every event; GraphiQL's
page asks for a token before it starts (the browser checks are in tests/test_deploy_docs_browser.py)."""

from __future__ import annotations

import re

from service.webhooks.events import PING, event_names


async def test_redoc_is_served_without_a_cdn(api):
    page = await api.http.get("/redoc")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "fonts.googleapis" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/static/docs/redoc.standalone.js" in assets
    for url in assets:
        assert url.startswith("/"), url
        assert (await api.http.get(url)).status_code == 200, url
    assert "worker-src 'self' blob:" in page.headers["content-security-policy"]


async def test_every_event_is_declared_under_webhooks(api):
    doc = api.app.openapi()
    assert set(doc["webhooks"]) == {*event_names(), PING}
    schemas = doc["components"]["schemas"]
    for event, item in doc["webhooks"].items():
        op = item["post"]
        assert {p["name"] for p in op["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        body = schemas[op["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]]
        assert body["properties"]["type"]["enum"] == [event]
        data = schemas[body["properties"]["data"]["$ref"].split("/")[-1]]
        if event.startswith("subscription."):
            assert "client_id" not in data["properties"]
        else:
            assert "client_id" in data["required"], event


async def test_graphiql_page_asks_for_a_token_and_sends_no_placeholder(api):
    page = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert '<input id="token"' in page.text
    assert '<div id="graphiql" hidden>' in page.text
    assert "<paste" not in page.text  # no placeholder bearer is ever sent
