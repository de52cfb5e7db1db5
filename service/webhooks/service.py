"""Webhook subscriptions' use cases: the SQL and the rules behind `/v1/webhook-subscriptions` (rest.py routes).

Subscriptions belong to the organization (no client) and see its every event, so a patient-bound token may not
manage them. Their secret is returned once, by create and by rotate-secret, and is never written to a trail.
Functions only flush: the caller's unit of work commits.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func, insert, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.auth.scopes import required_scope
from service.collections.repository import decode_cursor, encode_cursor, fetch_page
from service.collections.service import check_if_match, fetch_live
from service.collections.types import uuid7
from service.errors import Conflict, Forbidden, NotFound, ValidationFailed
from service.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from service.webhooks.events import PING, event_names
from service.webhooks.signing import new_secret
from service.webhooks.targets import check_url

SUBS = WebhookSubscription.__table__
DELIVERIES = WebhookDelivery.__table__
OUTBOX = WebhookEvent.__table__
RESOURCE = "Webhook"
SECRET_OVERLAP = timedelta(hours=24)  # how long the previous secret keeps signing after a rotation

COLUMNS = [SUBS.c.id, SUBS.c.url, SUBS.c.events, SUBS.c.active, SUBS.c.disabled_reason,
           SUBS.c.previous_secret_expires_at, SUBS.c.created_at, SUBS.c.updated_at, SUBS.c.version,
           SUBS.c.deleted_at]
_D = DELIVERIES
DELIVERY_COLUMNS = [_D.c.id, _D.c.event, _D.c.event_id, OUTBOX.c.payload, _D.c.status, _D.c.attempts,
                    _D.c.next_attempt_at, _D.c.last_attempt_at, _D.c.last_status_code, _D.c.last_error,
                    _D.c.delivered_at, _D.c.created_at]


def system_only(who: Principal, perm: str) -> Principal:
    """Subscriptions see the whole organization's events: a patient-bound token may not manage them."""
    if who.patient_id is not None:
        raise Forbidden(required_scope(RESOURCE, perm, "system"))
    return who


def _out(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data.pop("deleted_at", None)
    return data


def _delivery_out(row: Any) -> dict[str, Any]:
    item = dict(row._mapping)
    if item["status"] != "pending":
        item["next_attempt_at"] = None
    return item


async def _validate(url: str | None, events: list[str] | None, *, allow_private: bool) -> None:
    if events is not None:
        known = set(event_names())
        errors = [i for i, e in enumerate(events) if e not in known]
        if errors:
            raise ValidationFailed.on(f"events.{errors[0]}", f"Unknown event {events[errors[0]]!r}", "unknown_event")
    if url is not None:
        await check_url(url, allow_private=allow_private)


async def _fetch(db: AsyncConnection, who: Principal, sub_id: UUID, *, for_update: bool = False) -> Any:
    stmt = select(*COLUMNS, SUBS.c.secret).where(SUBS.c.org_id == who.org_id, SUBS.c.id == sub_id)
    return await fetch_live(db, stmt, "webhook subscription", sub_id, for_update=for_update)


async def check_new(who: Principal, url: str, events: list[str], *, allow_private: bool) -> None:
    """A create's rules, checked before its idempotent run (a 422 is never stored under a key)."""
    system_only(who, "c")
    await _validate(url, events, allow_private=allow_private)


async def create(db: AsyncConnection, who: Principal, url: str, events: list[str], active: bool) -> dict[str, Any]:
    """The new subscription, with its secret (shown this once)."""
    secret = new_secret()
    row = (await db.execute(
        insert(SUBS).values(org_id=who.org_id, id=uuid7(), url=url, events=list(dict.fromkeys(events)),
                            active=active, secret=secret).returning(*COLUMNS)
    )).one()
    return {**_out(row), "secret": secret}


async def page(db: AsyncConnection, who: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
    system_only(who, "s")
    stmt = select(*COLUMNS).where(SUBS.c.org_id == who.org_id, SUBS.c.deleted_at.is_(None))
    if cursor:
        stmt = stmt.where(SUBS.c.id > decode_cursor(cursor))
    rows, next_cursor = await fetch_page(db, stmt.order_by(SUBS.c.id), limit, lambda r: encode_cursor(r.id))
    return {"data": [_out(r) for r in rows], "next_cursor": next_cursor}


async def read(db: AsyncConnection, who: Principal, sub_id: UUID) -> dict[str, Any]:
    system_only(who, "r")
    return _without_secret(await _fetch(db, who, sub_id))


def _without_secret(row: Any) -> dict[str, Any]:
    data = _out(row)
    data.pop("secret", None)
    return data


async def update_subscription(db: AsyncConnection, who: Principal, sub_id: UUID, changes: dict[str, Any],
                              if_match: str | None, *, allow_private: bool) -> dict[str, Any]:
    system_only(who, "u")
    current = await _fetch(db, who, sub_id, for_update=True)
    await _validate(changes.get("url"), changes.get("events"), allow_private=allow_private)  # 422 before 412
    check_if_match(if_match, current.version)
    if "events" in changes:
        changes["events"] = list(dict.fromkeys(changes["events"]))
    if changes.get("active"):
        changes["disabled_reason"] = None
    row = (await db.execute(
        update(SUBS).where(SUBS.c.org_id == who.org_id, SUBS.c.id == sub_id)
        .values(**changes, version=SUBS.c.version + 1, updated_at=func.now()).returning(*COLUMNS)
    )).one()
    return _out(row)


async def delete(db: AsyncConnection, who: Principal, sub_id: UUID, if_match: str | None) -> None:
    system_only(who, "d")
    current = await _fetch(db, who, sub_id, for_update=True)
    check_if_match(if_match, current.version)
    await db.execute(
        update(SUBS).where(SUBS.c.org_id == who.org_id, SUBS.c.id == sub_id)
        .values(deleted_at=func.now(), updated_at=func.now(), active=False, version=SUBS.c.version + 1)
    )


def _deliveries(who: Principal, sub_id: UUID) -> Any:
    return (
        select(*DELIVERY_COLUMNS)
        .join(OUTBOX, (OUTBOX.c.org_id == _D.c.org_id) & (OUTBOX.c.id == _D.c.event_id))
        .where(_D.c.org_id == who.org_id, _D.c.subscription_id == sub_id)
    )


async def deliveries(db: AsyncConnection, who: Principal, sub_id: UUID, limit: int,
                     cursor: str | None) -> dict[str, Any]:
    """The delivery log, newest first."""
    system_only(who, "s")
    await _fetch(db, who, sub_id)
    stmt = _deliveries(who, sub_id)
    if cursor:
        after = select(_D.c.created_at, _D.c.id).where(_D.c.org_id == who.org_id, _D.c.id == decode_cursor(cursor))
        stmt = stmt.where(tuple_(_D.c.created_at, _D.c.id) < after.scalar_subquery())
    rows, next_cursor = await fetch_page(db, stmt.order_by(_D.c.created_at.desc(), _D.c.id.desc()), limit,
                                         lambda r: encode_cursor(r.id))
    return {"data": [_delivery_out(r) for r in rows], "next_cursor": next_cursor}


async def _delivery(db: AsyncConnection, who: Principal, sub_id: UUID, delivery_id: UUID) -> dict[str, Any]:
    row = (await db.execute(_deliveries(who, sub_id).where(_D.c.id == delivery_id))).first()
    if row is None:
        raise NotFound(f"No delivery with id {delivery_id} for this subscription")
    return _delivery_out(row)


def _require_active(sub: Any, doing: str) -> None:
    if not sub.active:
        raise Conflict(f"The subscription is disabled ({sub.disabled_reason or 'inactive'}); re-enable it with "
                       f"PATCH active: true before {doing}")


async def ping(db: AsyncConnection, who: Principal, sub_id: UUID) -> dict[str, Any]:
    """Queue a ``subscription.ping`` event for this subscription alone, whatever events it asked for."""
    system_only(who, "u")
    sub = await _fetch(db, who, sub_id)
    _require_active(sub, "a ping")
    payload = {"type": "subscription", "id": str(sub_id), "action": "ping", "version": sub.version,
               "org_id": str(who.org_id)}
    event_id = (await db.execute(
        insert(OUTBOX).values(org_id=who.org_id, event=PING, record_id=sub_id, action="ping", version=sub.version,
                              payload=payload).returning(OUTBOX.c.id)
    )).scalar_one()
    delivery_id = (await db.execute(
        insert(DELIVERIES).values(org_id=who.org_id, subscription_id=sub_id, event_id=event_id, event=PING)
        .returning(DELIVERIES.c.id)
    )).scalar_one()
    return await _delivery(db, who, sub_id, delivery_id)


async def redeliver(db: AsyncConnection, who: Principal, sub_id: UUID, delivery_id: UUID) -> dict[str, Any]:
    """Make a delivery due now, with the same ``webhook-id`` and body; its retries start over from now."""
    system_only(who, "u")
    sub = await _fetch(db, who, sub_id)
    _require_active(sub, "a redelivery")
    done = (await db.execute(
        update(DELIVERIES)
        .where(_D.c.org_id == who.org_id, _D.c.subscription_id == sub_id, _D.c.id == delivery_id)
        .values(status="pending", next_attempt_at=func.now(), redelivered_at=func.now(), lease_token=None)
        .returning(literal(1))
    )).first()
    if done is None:
        raise NotFound(f"No delivery with id {delivery_id} for this subscription")
    return await _delivery(db, who, sub_id, delivery_id)


async def rotate_secret(db: AsyncConnection, who: Principal, sub_id: UUID) -> dict[str, Any]:
    """A new secret (returned this once); the current one keeps signing, as a second signature, for 24 h."""
    system_only(who, "u")
    current = await _fetch(db, who, sub_id, for_update=True)
    secret = new_secret()
    row = (await db.execute(
        update(SUBS).where(SUBS.c.org_id == who.org_id, SUBS.c.id == sub_id)
        .values(secret=secret, previous_secret=current.secret,
                previous_secret_expires_at=func.now() + SECRET_OVERLAP,
                version=SUBS.c.version + 1, updated_at=func.now())
        .returning(*COLUMNS)
    )).one()
    return {**_out(row), "secret": secret}
