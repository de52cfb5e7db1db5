"""CONTRACT.md section 3's safety rules, once: which write of a measurement opens an alert, with which immutable
trigger and severity; how an alert's status moves; how a clinician raises one by hand; how alerts read in a
clinical summary. Every path that stores or changes a measurement (create, PATCH, PUT by external id, batch,
bulk import, FHIR create) reaches ``measurement_after_write`` through the measurements' ``after_write``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import any_, bindparam, case, insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.collections.records import record_changes
from service.collections.registry import REGISTRY, RuleContext, Written
from service.collections.repository import readable, readable_record
from service.collections.service import serialize
from service.collections.types import uuid7s
from service.domain.enums import AlertSeverity, AlertStatus
from service.domain.instruments import INSTRUMENTS, RiskRule
from service.errors import RuleViolation
from service.models import OutcomeMarker
from service.telemetry import metrics

RANK = {AlertSeverity.urgent: 0, AlertSeverity.high: 1}  # lower is more severe (lists put urgent first)


@dataclass(frozen=True)
class Trigger:
    """What in a measurement opens an alert: the alert's immutable ``trigger`` and its ``severity``."""

    kind: str
    instrument: str
    item9: int | None
    total: int
    band: str
    severity: AlertSeverity
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "instrument": self.instrument, "item9": self.item9, "total": self.total,
                "band": self.band}


def _severity(rule: RiskRule, items: list[int] | None) -> AlertSeverity:
    if rule.item is not None and rule.urgent_from is not None and items and items[rule.item - 1] >= rule.urgent_from:
        return AlertSeverity.urgent
    return AlertSeverity.high


def trigger_of(marker: dict[str, Any] | None, measurement: dict[str, Any] | None) -> Trigger | None:
    """The trigger a measurement's values meet, or None. When several rules fire, the first listed names the
    kind (item 9 before a severe total) and the most severe names the severity; the total is always kept."""
    if not marker or not marker.get("instrument") or measurement is None:
        return None
    spec = INSTRUMENTS[marker["instrument"]]
    items, total = measurement.get("items"), int(measurement["value"])
    fired = [rule for rule in spec.risk if rule.fires(items, total)]
    if not fired:
        return None
    item_rule = next((rule for rule in spec.risk if rule.item is not None), None)
    item9 = items[item_rule.item - 1] if item_rule and item_rule.item and items else None
    severity = min((_severity(rule, items) for rule in fired), key=RANK.__getitem__)
    band = spec.band(total)
    detail = f"answered {item9} of {spec.item_max}; total {total} ({band})" if fired[0].item else \
        f"total {total} ({band})"
    return Trigger(kind=fired[0].kind, instrument=spec.key, item9=item9, total=total, band=band, severity=severity,
                   reason=f"{fired[0].reason}: {detail}")


def alert_to_open(marker: dict[str, Any] | None, before: dict[str, Any] | None,
                  after: dict[str, Any]) -> Trigger | None:
    """The alert a write of a measurement opens (``before``: the stored values it replaces, None for a new one):
    a trigger the new values meet that the old ones did not, or of a higher severity, or of another kind. A
    correction that no longer meets a trigger opens nothing and leaves the alerts it opened as they are."""
    new = trigger_of(marker, after)
    if new is None:
        return None
    old = trigger_of(marker, before)
    if old is None or new.kind != old.kind or RANK[new.severity] < RANK[old.severity]:
        return new
    return None


# ---------------------------------------------------------------- opening alerts


async def _markers(conn: AsyncConnection, who: Principal, ids: set[Any]) -> dict[Any, dict[str, Any]]:
    """The markers' instruments, deleted markers included: a correction of a measurement whose marker was
    deleted is still checked."""
    table = OutcomeMarker.__table__
    ids_param = bindparam("marker_ids", list(ids), type_=ARRAY(table.c.id.type))
    stmt = readable(table, who).with_only_columns(table.c.id, table.c.instrument).where(table.c.id == any_(ids_param))
    return {r.id: {"id": r.id, "instrument": r.instrument} for r in await conn.execute(stmt)}


async def open_alerts(conn: AsyncConnection, who: Principal,
                      pending: Sequence[tuple[dict[str, Any], Trigger]]) -> dict[Any, dict[str, Any]]:
    """One open alert per (measurement, trigger), in one INSERT, with their history, change-feed entries and
    ``safety_alert.opened`` events (``record_changes``); the alerts by measurement id."""
    if not pending:
        return {}
    coll = REGISTRY["safety-alerts"]
    rows = [
        {"org_id": who.org_id, "id": new_id, "client_id": m["client_id"], "measurement_id": m["id"],
         "reason": t.reason, "trigger": t.as_json(), "severity": t.severity.value, "observed_at": m["observed_at"],
         "status": AlertStatus.open.value, "external_ids": []}
        for (m, t), new_id in zip(pending, uuid7s(len(pending)), strict=True)
    ]
    written = (await conn.execute(insert(coll.table).values(rows).returning(*coll.table.c))).all()
    alerts = [serialize(coll, row) for row in written]
    await record_changes(conn, who, coll.name, [{**a, "deleted_at": None} for a in alerts], "created")
    metrics.SAFETY_ALERTS_OPENED.inc(len(alerts))
    return {a["measurement_id"]: a for a in alerts}


async def measurement_after_write(conn: AsyncConnection, who: Principal, writes: Sequence[Written],
                                  known: dict[Any, dict[str, Any]] | None = None) -> None:
    """Every stored or changed measurement: the alert it opens, in the same transaction, returned with it as
    ``safety_alert`` (null when none) and added to its ``safety_alert_ids``. ``known``: markers the caller has
    already read in this transaction (with their ``instrument``), by id; the others are read here."""
    if not writes:
        return
    wanted = {w.record["marker_id"] for w in writes}
    markers = {i: m for i in wanted if (m := known.get(i)) is not None} if known else {}
    if len(markers) < len(wanted):
        markers.update(await _markers(conn, who, wanted - markers.keys()))
    pending: list[tuple[dict[str, Any], Trigger]] = []
    for w in writes:
        # Moved to another marker: judged as a new measurement of that one (it opens its trigger, if any).
        before = w.before if w.before is not None and w.before["marker_id"] == w.record["marker_id"] else None
        trigger = alert_to_open(markers.get(w.record["marker_id"]), before, w.record)
        if trigger is not None:
            pending.append((w.record, trigger))
    opened = await open_alerts(conn, who, pending)
    for w in writes:
        alert = opened.get(w.record["id"]) if opened else None  # most writes open none: no look-up of their ids
        w.record["safety_alert"] = alert
        w.record["safety_alert_ids"] = [*(w.record.get("safety_alert_ids") or []), *([alert["id"]] if alert else [])]


# ---------------------------------------------------------------- rules of the alerts themselves


async def alert_raised_by_hand(ctx: RuleContext) -> None:
    """``POST /v1/safety-alerts``: a clinician raises an alert. It opens ``open``; on a measurement it is dated by
    the measurement and keeps the trigger that measurement meets, and its severity is never below that
    trigger's; without one it is dated when observed (default now) and ``high`` unless the clinician says
    ``urgent``."""
    if ctx.current is not None:
        return
    severity = AlertSeverity(ctx.data.get("severity") or AlertSeverity.high)
    observed, trigger = ctx.data.get("observed_at"), None
    measurement = ctx.ref("measurement_id")
    if measurement is not None:
        if observed is not None and observed != measurement["observed_at"]:
            raise RuleViolation("observed_at", "An alert on a measurement is dated by the measurement's observed_at; "
                                "leave observed_at out", "observed_at_of_measurement")
        observed = measurement["observed_at"]
        met = trigger_of((await _markers(ctx.conn, ctx.who, {measurement["marker_id"]})).get(measurement["marker_id"]),
                         measurement)
        if met is not None:
            trigger, severity = met.as_json(), min(severity, met.severity, key=RANK.__getitem__)
    ctx.extra.update(trigger=trigger, severity=severity.value, observed_at=observed or datetime.now(UTC),
                     status=AlertStatus.open.value)


MOVES = {(AlertStatus.open, AlertStatus.acknowledged), (AlertStatus.open, AlertStatus.resolved),
         (AlertStatus.acknowledged, AlertStatus.resolved), (AlertStatus.resolved, AlertStatus.open)}


async def alert_status_moves(ctx: RuleContext) -> None:
    """open -> acknowledged, open or acknowledged -> resolved (with a resolution_note), resolved -> open (clearing
    the resolution and the acknowledgement: a re-opened alert waits for a clinician again); nothing else."""
    if ctx.current is None:
        return
    old, new = AlertStatus(ctx.current["status"]), AlertStatus(ctx.data["status"])
    now, by = datetime.now(UTC), ctx.who.who
    if old != new:
        if (old, new) not in MOVES:
            raise RuleViolation("status", f"An alert cannot move from {old} to {new} (open -> acknowledged, open or "
                                "acknowledged -> resolved, resolved -> open)", "invalid_status_move")
        if new == AlertStatus.open:
            ctx.extra.update(opened_at=now, acknowledged_at=None, acknowledged_by=None, resolved_at=None,
                             resolved_by=None, resolution_note=None)
        else:
            if not ctx.current.get("acknowledged_at"):
                ctx.extra.update(acknowledged_at=now, acknowledged_by=by)
            if new == AlertStatus.resolved:
                ctx.extra.update(resolved_at=now, resolved_by=by)
    note = ctx.data.get("resolution_note")
    note_changed = ctx.changed("resolution_note")
    if new == AlertStatus.resolved and (old != new or note_changed) and not (note or "").strip():
        raise RuleViolation("resolution_note", "Resolving an alert needs a resolution_note: what was done",
                            "resolution_note_required")
    if new != AlertStatus.resolved and note_changed and note is not None:
        raise RuleViolation("resolution_note", "A resolution_note is written when resolving the alert",
                            "resolution_note_without_resolving")


# ---------------------------------------------------------------- in a clinical summary


def trigger_text(alert: dict[str, Any]) -> str:
    """What opened an alert, in words, from what never changes: its trigger (else, raised by a clinician, its
    reason)."""
    trigger = alert.get("trigger")
    if not trigger:
        return f"Raised by a clinician: {alert['reason'].strip().rstrip('.')}"
    spec = INSTRUMENTS[trigger["instrument"]]
    total = f"total {trigger['total']} ({str(trigger['band']).replace('_', ' ')})"
    if trigger["kind"] == "item9":
        return (f"{spec.name} item 9 (thoughts of being better off dead or of self-harm) answered "
                f"{trigger['item9']} of {spec.item_max}; {total}")
    return f"{spec.name} {total}: severe symptoms, for clinician review"


def alert_line(alert: dict[str, Any]) -> str:
    """One alert in behavioural words, from what never changes (trigger, severity, observed_at) and its status."""
    severity = "Urgent" if alert["severity"] == AlertSeverity.urgent else "High"
    status = (f"acknowledged on {alert['acknowledged_at'].date().isoformat()}, not yet resolved"
              if alert["status"] == AlertStatus.acknowledged else f"open since {alert['opened_at'].date().isoformat()}")
    return f"{severity}: {trigger_text(alert)} (observed {alert['observed_at'].date().isoformat()}); {status}."


async def unresolved_alerts(conn: AsyncConnection, who: Principal, client_id: UUID) -> list[dict[str, Any]]:
    """The client's open and acknowledged alerts, in list order (urgent first, then oldest first)."""
    coll = REGISTRY["safety-alerts"]
    table = coll.table
    stmt = readable_record(coll, who).where(
        table.c.client_id == client_id, table.c.deleted_at.is_(None),
        table.c.status.in_([AlertStatus.open.value, AlertStatus.acknowledged.value]))
    return [serialize(coll, row) for row in await conn.execute(stmt.order_by(*coll.list_keys()))]


def severity_rank(table: Any) -> Any:
    """The SQL twin of ``RANK``, for list orders."""
    return case(*((table.c.severity == s.value, r) for s, r in RANK.items()), else_=len(RANK))

