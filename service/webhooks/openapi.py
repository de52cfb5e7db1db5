"""Every webhook event in the OpenAPI document (`webhooks`): the Standard Webhooks envelope per event, and the
headers each delivery carries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.webhooks.events import PING, event_names
from service.webhooks.schemas import RecordEventData, SafetyAlertEventData, SubscriptionEventData

REF = "#/components/schemas/"
_HEADERS = [
    ("webhook-id", "The delivery's id: the same on every attempt and redelivery (dedupe on it)"),
    ("webhook-timestamp", "Unix seconds of this attempt; refuse it when more than 5 minutes off"),
    ("webhook-signature", "`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the secret (base64 after "
                          "`whsec_`); space-separated, one per secret, while a rotated secret overlaps"),
]
_EXAMPLE_IDS = {"id": "0190c7a4-5f5e-7c1a-9d1e-4a2b3c4d5e6f", "org_id": "0190c7a4-1111-7c1a-9d1e-4a2b3c4d5e6f",
                "client_id": "0190c7a4-2222-7c1a-9d1e-4a2b3c4d5e6f"}


def _camel(event: str) -> str:
    return "".join(part.capitalize() for part in event.replace(".", "_").split("_")) + "Event"


def _data_model(event: str) -> type[BaseModel]:
    if event == "safety_alert.opened":
        return SafetyAlertEventData
    if event.startswith("subscription."):
        return SubscriptionEventData
    return RecordEventData


def webhook_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(component schemas, the `webhooks` section)."""
    models: list[type[BaseModel]] = [RecordEventData, SafetyAlertEventData, SubscriptionEventData]
    _, top = models_json_schema([(m, "serialization") for m in models], ref_template=REF + "{model}")
    components: dict[str, Any] = dict(top.get("$defs", {}))
    webhooks: dict[str, Any] = {}
    for event in [*event_names(), PING]:
        name = _camel(event)
        data = _data_model(event)
        record_type, action = event.split(".")
        components[name] = {
            "type": "object", "title": name, "description": f"The `{event}` event (Standard Webhooks envelope)",
            "required": ["type", "timestamp", "data"], "additionalProperties": False,
            "properties": {
                "type": {"type": "string", "enum": [event]},
                "timestamp": {"type": "string", "format": "date-time", "description": "When the event happened"},
                "data": {"$ref": REF + data.__name__},
            },
        }
        example_data = {"type": record_type, "action": action, "version": 1, **_EXAMPLE_IDS}
        if data is SubscriptionEventData:
            example_data.pop("client_id")
        webhooks[event] = {"post": {
            "operationId": f"webhook_{event.replace('.', '_')}",
            "tags": ["Webhooks"],
            "summary": f"{event} (sent to subscribers)",
            "description": _describe(event),
            "security": [],
            "parameters": [{"name": h, "in": "header", "required": True, "description": d,
                            "schema": {"type": "string"}} for h, d in _HEADERS],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": REF + name},
                "example": {"type": event, "timestamp": "2026-12-05T10:00:00Z", "data": example_data}}}},
            "responses": {
                "200": {"description": "Received (any 2xx): not sent again"},
                "410": {"description": "Gone: the subscription is disabled"},
            },
        }}
    return components, webhooks


def _describe(event: str) -> str:
    if event == PING:
        return "A test event, sent by `POST /v1/webhook-subscriptions/{id}/ping` whatever the subscription's events."
    if event == "subscription.disabled":
        return "A subscription was disabled (retries exhausted, or its endpoint answered 410)."
    if event == "safety_alert.opened":
        return "A safety rule opened an alert for a client: read it at `GET /v1/safety-alerts/{id}`."
    return (f"A record was {event.split('.')[1]}: read it with your own token (the event holds its id, version and "
            "client, and no other client data). Other statuses than 2xx are retried with backoff for 24 h.")
