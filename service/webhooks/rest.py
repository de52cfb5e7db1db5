"""`/v1/webhook-subscriptions`: a small dedicated router rather than the collection machinery.

The machinery writes every version of a record to the history and the change feed and serves the same
representation on every read; a subscription's secret must be shown once and never stored in a trail,
subscriptions belong to the organization (no client), and PUT-by-identifier, ?include= and GraphQL do
not apply. The conventions are the same: scopes (``Webhook``), ETag/If-Match, cursors, 404/410.

(No ``from __future__ import annotations`` here: FastAPI must see the real body and output types.)
"""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, insert, select, tuple_, update

from service.auth.principal import Principal
from service.auth.rest import needs
from service.auth.scopes import required_scope
from service.collections.idempotency import idempotent
from service.collections.repository import decode_cursor, encode_cursor, fetch_page
from service.collections.rest import Db, IdempotencyKeyHeader, etag, problems
from service.collections.service import check_if_match, fetch_live
from service.collections.types import Flag, Out, Strict, patch_model, uuid7
from service.errors import Forbidden, ValidationFailed
from service.http import NO_STORE, JSONOut, Paged, StrictRoute
from service.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from service.webhooks.events import event_names
from service.webhooks.signing import new_secret
from service.webhooks.targets import check_url

SUBS = WebhookSubscription.__table__
DELIVERIES = WebhookDelivery.__table__
OUTBOX = WebhookEvent.__table__
RESOURCE = "Webhook"

Url = Annotated[str, Field(min_length=8, max_length=2000, description="https:// endpoint (public address; "
                           "refused with 422 when it does not resolve to one)",
                           pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$")]
Events = Annotated[list[Annotated[str, Field(json_schema_extra={"enum": event_names()})]],
                   Field(min_length=1, max_length=100, description="e.g. strength.updated, safety_alert.opened")]


class WebhookSubscriptionIn(Strict):
    url: Url
    events: Events
    active: Flag = True


if TYPE_CHECKING:  # a model built at import is no type to a checker: it sees a pydantic model
    WebhookSubscriptionPatch = BaseModel
else:
    WebhookSubscriptionPatch = patch_model(WebhookSubscriptionIn, "WebhookSubscriptionPatch")


class WebhookSubscriptionOut(Out):
    id: UUID
    url: str
    events: list[str]
    active: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int


class WebhookSubscriptionCreated(WebhookSubscriptionOut):
    secret: str = Field(description="whsec_... ; shown in this response only")


class WebhookSubscriptionPage(Out):
    data: list[WebhookSubscriptionOut]
    next_cursor: str | None


class WebhookDeliveryOut(Out):
    id: UUID = Field(description="The webhook-id header of every attempt")
    event: str
    event_id: UUID
    payload: dict[str, Any]
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class WebhookDeliveryPage(Out):
    data: list[WebhookDeliveryOut]
    next_cursor: str | None


def _system_only(who: Principal, perm: str) -> Principal:
    """Subscriptions see the whole organization's events: a patient-bound token may not manage them."""
    if who.patient_id is not None:
        raise Forbidden(required_scope(RESOURCE, perm, "system"))
    return who


Creator = Annotated[Principal, needs(RESOURCE, "c")]
Reader = Annotated[Principal, needs(RESOURCE, "r")]
Searcher = Annotated[Principal, needs(RESOURCE, "s")]
Updater = Annotated[Principal, needs(RESOURCE, "u")]
Deleter = Annotated[Principal, needs(RESOURCE, "d")]
IfMatch = Annotated[str | None, Header(max_length=200, description='W/"<version>" from the ETag')]
Page = Annotated[Paged, Query()]

router = APIRouter(prefix="/v1/webhook-subscriptions", tags=["Webhooks"], route_class=StrictRoute)

COLUMNS = [SUBS.c.id, SUBS.c.url, SUBS.c.events, SUBS.c.active, SUBS.c.disabled_reason, SUBS.c.created_at,
           SUBS.c.updated_at, SUBS.c.version, SUBS.c.deleted_at]


def _out(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data.pop("deleted_at", None)
    return data


async def _validate(request: Request, url: str | None, events: list[str] | None) -> None:
    if events is not None:
        known = set(event_names())
        errors = [i for i, e in enumerate(events) if e not in known]
        if errors:
            raise ValidationFailed.on(f"events.{errors[0]}", f"Unknown event {events[errors[0]]!r}", "unknown_event")
    if url is not None:
        await check_url(url, allow_private=request.app.state.ctx.settings.webhooks_allow_private_targets)


async def _fetch(db: Any, who: Principal, sub_id: UUID, *, for_update: bool = False) -> Any:
    stmt = select(*COLUMNS).where(SUBS.c.org_id == who.org_id, SUBS.c.id == sub_id)
    return await fetch_live(db, stmt, "webhook subscription", sub_id, for_update=for_update)


def _response(record: dict[str, Any], status: int = 200, **headers: str) -> JSONOut:
    return JSONOut(record, status_code=status, headers={"ETag": etag(record["version"]), **NO_STORE, **headers})


@router.post("", status_code=201, response_model=WebhookSubscriptionCreated, operation_id="create_webhook_subscription",
             summary="Subscribe an endpoint to events (the secret is returned once)",
             responses=problems(400, 401, 403, 409, 413, 415, 422))
async def create_subscription(body: WebhookSubscriptionIn, who: Creator, db: Db, request: Request,
                              idempotency_key: IdempotencyKeyHeader = None) -> Response:
    _system_only(who, "c")
    await _validate(request, body.url, body.events)

    async def run() -> Response:
        secret = new_secret()
        row = (await db.execute(
            insert(SUBS).values(org_id=who.org_id, id=uuid7(), url=body.url, events=list(dict.fromkeys(body.events)),
                                active=body.active, secret=secret).returning(*COLUMNS)
        )).one()
        record = {**_out(row), "secret": secret}
        return _response(record, 201, Location=f"/v1/webhook-subscriptions/{record['id']}")

    return await idempotent(request, db, who, run)


@router.get("", response_model=WebhookSubscriptionPage, operation_id="list_webhook_subscriptions",
            summary="List webhook subscriptions", responses=problems(400, 401, 403, 422))
async def list_subscriptions(who: Searcher, db: Db, page: Page) -> Response:
    _system_only(who, "s")
    stmt = select(*COLUMNS).where(SUBS.c.org_id == who.org_id, SUBS.c.deleted_at.is_(None))
    if page.cursor:
        stmt = stmt.where(SUBS.c.id > decode_cursor(page.cursor))
    rows, next_cursor = await fetch_page(db, stmt.order_by(SUBS.c.id), page.limit, lambda r: encode_cursor(r.id))
    return JSONOut({"data": [_out(r) for r in rows], "next_cursor": next_cursor}, headers=NO_STORE)


@router.get("/{webhook_subscription_id}", response_model=WebhookSubscriptionOut,
            operation_id="read_webhook_subscription", summary="Read a webhook subscription",
            responses=problems(401, 403, 404, 410, 422))
async def read_subscription(webhook_subscription_id: UUID, who: Reader, db: Db) -> Response:
    _system_only(who, "r")
    return _response(_out(await _fetch(db, who, webhook_subscription_id)))


@router.patch("/{webhook_subscription_id}", response_model=WebhookSubscriptionOut,
              operation_id="update_webhook_subscription",
              summary="Update a webhook subscription (active: true re-enables a disabled one)",
              responses=problems(400, 401, 403, 404, 409, 410, 412, 413, 415, 422))
async def patch_subscription(webhook_subscription_id: UUID, body: WebhookSubscriptionPatch, who: Updater, db: Db,
                             request: Request, if_match: IfMatch = None) -> Response:
    _system_only(who, "u")
    current = await _fetch(db, who, webhook_subscription_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    await _validate(request, changes.get("url"), changes.get("events"))  # an invalid body is a 422 before any 412
    check_if_match(if_match, current.version)
    if "events" in changes:
        changes["events"] = list(dict.fromkeys(changes["events"]))
    if changes.get("active"):
        changes["disabled_reason"] = None
    row = (await db.execute(
        update(SUBS).where(SUBS.c.org_id == who.org_id, SUBS.c.id == webhook_subscription_id)
        .values(**changes, version=SUBS.c.version + 1, updated_at=func.now()).returning(*COLUMNS)
    )).one()
    return _response(_out(row))


@router.delete("/{webhook_subscription_id}", status_code=204, response_class=Response,
               operation_id="delete_webhook_subscription", summary="Delete a webhook subscription",
               responses=problems(401, 403, 404, 410, 412, 422))
async def delete_subscription(webhook_subscription_id: UUID, who: Deleter, db: Db,
                              if_match: IfMatch = None) -> Response:
    _system_only(who, "d")
    current = await _fetch(db, who, webhook_subscription_id, for_update=True)
    check_if_match(if_match, current.version)
    await db.execute(
        update(SUBS).where(SUBS.c.org_id == who.org_id, SUBS.c.id == webhook_subscription_id)
        .values(deleted_at=func.now(), updated_at=func.now(), active=False, version=SUBS.c.version + 1)
    )
    return Response(status_code=204)


@router.get("/{webhook_subscription_id}/deliveries", response_model=WebhookDeliveryPage,
            operation_id="list_webhook_deliveries", summary="The delivery log of a subscription, newest first",
            responses=problems(400, 401, 403, 404, 410, 422))
async def list_deliveries(webhook_subscription_id: UUID, who: Searcher, db: Db, page: Page) -> Response:
    _system_only(who, "s")
    await _fetch(db, who, webhook_subscription_id)
    d = DELIVERIES
    stmt = (
        select(d.c.id, d.c.event, d.c.event_id, OUTBOX.c.payload, d.c.status, d.c.attempts, d.c.next_attempt_at,
               d.c.last_attempt_at, d.c.last_status_code, d.c.last_error, d.c.delivered_at, d.c.created_at)
        .join(OUTBOX, (OUTBOX.c.org_id == d.c.org_id) & (OUTBOX.c.id == d.c.event_id))
        .where(d.c.org_id == who.org_id, d.c.subscription_id == webhook_subscription_id)
    )
    if page.cursor:
        after = select(d.c.created_at, d.c.id).where(d.c.org_id == who.org_id, d.c.id == decode_cursor(page.cursor))
        stmt = stmt.where(tuple_(d.c.created_at, d.c.id) < after.scalar_subquery())
    rows, next_cursor = await fetch_page(db, stmt.order_by(d.c.created_at.desc(), d.c.id.desc()), page.limit,
                                         lambda r: encode_cursor(r.id))
    data = []
    for r in rows:
        item = dict(r._mapping)
        if item["status"] != "pending":
            item["next_attempt_at"] = None
        data.append(item)
    return JSONOut({"data": data, "next_cursor": next_cursor}, headers=NO_STORE)
