"""`/v1/webhook-subscriptions`: the routes; the use cases are in service.webhooks.service.

A small dedicated router rather than the collection machinery: the machinery writes every version of a record
to the history and the change feed and serves the same representation on every read; a subscription's secret
must be shown once and never stored in a trail, subscriptions belong to the organization (no client), and
PUT-by-identifier, ?include= and GraphQL do not apply. The conventions are the same: scopes (``Webhook``),
ETag/If-Match, cursors, 404/410, Idempotency-Key on every POST.

(No ``from __future__ import annotations`` here: FastAPI must see the real body and output types.)
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response

from service.api.dependencies import Db, IdempotencyKeyHeader, etag, needs, problems
from service.api.http import NO_STORE, JSONOut, Paged, StrictRoute
from service.api.idempotency import idempotent
from service.auth.principal import Principal
from service.webhooks import service
from service.webhooks.schemas import (
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookSubscriptionCreated,
    WebhookSubscriptionIn,
    WebhookSubscriptionOut,
    WebhookSubscriptionPage,
    WebhookSubscriptionPatch,
)

RESOURCE = service.RESOURCE

Creator = Annotated[Principal, needs(RESOURCE, "c")]
Reader = Annotated[Principal, needs(RESOURCE, "r")]
Searcher = Annotated[Principal, needs(RESOURCE, "s")]
Updater = Annotated[Principal, needs(RESOURCE, "u")]
Deleter = Annotated[Principal, needs(RESOURCE, "d")]
IfMatch = Annotated[str | None, Header(max_length=200, description='W/"<version>" from the ETag')]
Page = Annotated[Paged, Query()]

router = APIRouter(prefix="/v1/webhook-subscriptions", tags=["Webhooks"], route_class=StrictRoute)


def _allow_private(request: Request) -> bool:
    return bool(request.app.state.ctx.settings.webhooks_allow_private_targets)


def _response(record: dict[str, Any], status: int = 200, **headers: str) -> JSONOut:
    return JSONOut(record, status_code=status, headers={"ETag": etag(record["version"]), **NO_STORE, **headers})


@router.post("", status_code=201, response_model=WebhookSubscriptionCreated, operation_id="create_webhook_subscription",
             summary="Subscribe an endpoint to events (the secret is returned once)",
             responses=problems(400, 401, 403, 409, 413, 415, 422))
async def create_subscription(body: WebhookSubscriptionIn, who: Creator, db: Db, request: Request,
                              idempotency_key: IdempotencyKeyHeader = None) -> Response:
    await service.check_new(who, body.url, body.events, allow_private=_allow_private(request))

    async def run() -> Response:
        record = await service.create(db, who, body.url, body.events, body.active)
        return _response(record, 201, Location=f"/v1/webhook-subscriptions/{record['id']}")

    return await idempotent(request, db, who, run)


@router.get("", response_model=WebhookSubscriptionPage, operation_id="list_webhook_subscriptions",
            summary="List webhook subscriptions", responses=problems(400, 401, 403, 422))
async def list_subscriptions(who: Searcher, db: Db, page: Page) -> Response:
    return JSONOut(await service.page(db, who, page.limit, page.cursor), headers=NO_STORE)


@router.get("/{webhook_subscription_id}", response_model=WebhookSubscriptionOut,
            operation_id="read_webhook_subscription", summary="Read a webhook subscription",
            responses=problems(401, 403, 404, 410, 422))
async def read_subscription(webhook_subscription_id: UUID, who: Reader, db: Db) -> Response:
    return _response(await service.read(db, who, webhook_subscription_id))


@router.patch("/{webhook_subscription_id}", response_model=WebhookSubscriptionOut,
              operation_id="update_webhook_subscription",
              summary="Update a webhook subscription (active: true re-enables a disabled one)",
              responses=problems(400, 401, 403, 404, 409, 410, 412, 413, 415, 422))
async def patch_subscription(webhook_subscription_id: UUID, body: WebhookSubscriptionPatch, who: Updater, db: Db,
                             request: Request, if_match: IfMatch = None) -> Response:
    record = await service.update_subscription(db, who, webhook_subscription_id, body.model_dump(exclude_unset=True),
                                               if_match, allow_private=_allow_private(request))
    return _response(record)


@router.delete("/{webhook_subscription_id}", status_code=204, response_class=Response,
               operation_id="delete_webhook_subscription", summary="Delete a webhook subscription",
               responses=problems(401, 403, 404, 410, 412, 422))
async def delete_subscription(webhook_subscription_id: UUID, who: Deleter, db: Db,
                              if_match: IfMatch = None) -> Response:
    await service.delete(db, who, webhook_subscription_id, if_match)
    return Response(status_code=204)


@router.get("/{webhook_subscription_id}/deliveries", response_model=WebhookDeliveryPage,
            operation_id="list_webhook_deliveries", summary="The delivery log of a subscription, newest first",
            responses=problems(400, 401, 403, 404, 410, 422))
async def list_deliveries(webhook_subscription_id: UUID, who: Searcher, db: Db, page: Page) -> Response:
    return JSONOut(await service.deliveries(db, who, webhook_subscription_id, page.limit, page.cursor),
                   headers=NO_STORE)


@router.post("/{webhook_subscription_id}/ping", status_code=202, response_model=WebhookDeliveryOut,
             operation_id="ping_webhook_subscription",
             summary="Send a test event (subscription.ping) to the endpoint",
             description="Queues a signed `subscription.ping` event for this subscription alone, whatever events "
                         "it asked for, and answers with its delivery (follow it in the delivery log). A disabled "
                         "subscription answers 409: re-enable it first.",
             responses=problems(400, 401, 403, 404, 409, 410, 422))
async def ping_subscription(webhook_subscription_id: UUID, who: Updater, db: Db, request: Request,
                            idempotency_key: IdempotencyKeyHeader = None) -> Response:
    async def run() -> Response:
        return JSONOut(await service.ping(db, who, webhook_subscription_id), status_code=202, headers=NO_STORE)

    return await idempotent(request, db, who, run)


@router.post("/{webhook_subscription_id}/deliveries/{delivery_id}/redeliver", status_code=202,
             response_model=WebhookDeliveryOut, operation_id="redeliver_webhook_delivery",
             summary="Send a delivery again (same webhook-id and body)",
             description="Makes the delivery due now, whatever its status; it keeps its `webhook-id` (receivers "
                         "dedupe on it) and body, gets a new `webhook-timestamp`, and its retries start over. "
                         "A disabled subscription answers 409: re-enable it first.",
             responses=problems(400, 401, 403, 404, 409, 410, 422))
async def redeliver(webhook_subscription_id: UUID, delivery_id: UUID, who: Updater, db: Db, request: Request,
                    idempotency_key: IdempotencyKeyHeader = None) -> Response:
    async def run() -> Response:
        record = await service.redeliver(db, who, webhook_subscription_id, delivery_id)
        return JSONOut(record, status_code=202, headers=NO_STORE)

    return await idempotent(request, db, who, run)


@router.post("/{webhook_subscription_id}/rotate-secret", response_model=WebhookSubscriptionCreated,
             operation_id="rotate_webhook_secret", summary="Replace the signing secret (returned once)",
             description="Returns a new secret, shown in this response only. For 24 hours "
                         "(`previous_secret_expires_at`) every delivery carries two signatures in "
                         "`webhook-signature`, one by each secret, so a receiver can switch at its own pace; "
                         "then only the new one signs.",
             responses=problems(400, 401, 403, 404, 409, 410, 422))
async def rotate_secret(webhook_subscription_id: UUID, who: Updater, db: Db, request: Request,
                        idempotency_key: IdempotencyKeyHeader = None) -> Response:
    async def run() -> Response:
        return _response(await service.rotate_secret(db, who, webhook_subscription_id))

    return await idempotent(request, db, who, run)
