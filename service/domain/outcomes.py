"""Outcome markers, measurements (instruments scored by the service) and the safety alerts they raise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any
from uuid import UUID

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection

from service import metrics
from service.auth.principal import Principal
from service.collections import service
from service.collections.registry import Collection, Ref, RuleContext, register
from service.collections.schemas import schemas
from service.collections.sqljson import iso_datetime
from service.collections.types import (
    ExternalIds,
    Finite,
    RequiredText,
    ShortText,
    SmallInt,
    Strict,
    Text,
    Timestamp,
)
from service.domain.enums import AlertStatus, Direction, Instrument, MarkerKind
from service.domain.instruments import INSTRUMENTS
from service.errors import RuleViolation, ValidationFailed, field_error
from service.models import Measurement, OutcomeMarker, SafetyAlert


class OutcomeMarkerIn(Strict):
    client_id: UUID
    kind: MarkerKind
    name: ShortText
    unit: ShortText | None = Field(default=None, description="UCUM, e.g. /wk, min, h, {score}")
    code: ShortText | None = Field(default=None, description="LOINC where one exists")
    instrument: Instrument | None = None
    min: Finite | None = None
    max: Finite | None = None
    direction: Direction = Direction.higher_is_better
    goal_id: UUID | None = None
    external_ids: ExternalIds = Field(default_factory=list)


class MeasurementIn(Strict):
    client_id: UUID
    marker_id: UUID
    value: Finite | None = Field(default=None, description="For instruments, the total (computed if omitted)")
    items: list[SmallInt] | None = Field(default=None, max_length=50,
                                    description="Instrument item responses, in item order")
    observed_at: Timestamp
    source: ShortText | None = Field(default=None, description="The system that observed it (the id's namespace)")
    external_id: ShortText | None = Field(default=None, description="The source's own id, unique per source")
    note: Text | None = None


class SafetyAlertIn(Strict):
    client_id: UUID
    reason: RequiredText
    measurement_id: UUID | None = None
    status: AlertStatus = AlertStatus.open
    external_ids: ExternalIds = Field(default_factory=list)


# ---------------------------------------------------------------- rules


async def marker_kind_matches_instrument(ctx: RuleContext) -> None:
    kind, instrument = ctx.data.get("kind"), ctx.data.get("instrument")
    if kind == MarkerKind.instrument and not instrument:
        raise RuleViolation("instrument", "An instrument marker names its instrument", "instrument_required")
    if instrument and kind != MarkerKind.instrument:
        raise RuleViolation("kind", "A marker with an instrument has kind 'instrument'", "instrument_kind_mismatch")
    if instrument:
        spec = INSTRUMENTS[str(instrument)]
        defaults = {"min": 0.0, "max": float(spec.max_total), "unit": spec.unit, "code": spec.total_loinc,
                    "direction": spec.direction}
        for name, value in defaults.items():
            if ctx.data.get(name) is None or name in ("min", "max", "direction"):
                ctx.extra[name] = value
                ctx.data[name] = value
    low, high = ctx.data.get("min"), ctx.data.get("max")
    if low is not None and high is not None and low > high:
        raise RuleViolation("max", "max is below min", "min_above_max")


async def measurement_fits_marker(ctx: RuleContext) -> None:
    marker = ctx.ref("marker_id")
    if marker is None:
        return
    items = ctx.data.get("items")
    value = ctx.data.get("value")
    if marker["instrument"]:
        spec = INSTRUMENTS[marker["instrument"]]
        if items is None:
            raise RuleViolation("items", f"{spec.name} needs its {spec.n_items} item responses", "items_required")
        if len(items) != spec.n_items:
            raise RuleViolation("items", f"{spec.name} has {spec.n_items} items, got {len(items)}", "items_incomplete")
        bad = [
            field_error(f"items.{i}", f"must be between {spec.item_min} and {spec.item_max}", "item_out_of_range")
            for i, v in enumerate(items)
            if isinstance(v, bool) or not isinstance(v, int) or not spec.item_min <= v <= spec.item_max
        ]
        if bad:
            raise ValidationFailed(f"{spec.name} item responses are out of range", errors=bad)
        total = spec.score(items)
        if value is not None and value != total:
            raise RuleViolation("value", f"value {value:g} is not the {spec.name} total {total}", "value_mismatch")
        value = float(total)
        ctx.extra["value"] = value
        ctx.data["value"] = value
    else:
        if items is not None:
            raise RuleViolation("items", "Item responses belong to instrument markers only", "items_not_allowed")
        if value is None:
            raise RuleViolation("value", "A measurement needs a value", "value_required")
    low, high = marker["min"], marker["max"]
    if (low is not None and value < low) or (high is not None and value > high):
        raise RuleViolation("value", f"value {value:g} is outside the marker's range [{low}, {high}]",
                            "value_out_of_range")


async def alert_status_stamps(ctx: RuleContext) -> None:
    if not ctx.changed("status"):
        return
    now = datetime.now(UTC)
    status = ctx.data.get("status")
    if status in (AlertStatus.acknowledged, AlertStatus.resolved) and not ctx.data.get("acknowledged_at"):
        ctx.extra.update(acknowledged_at=now, acknowledged_by=ctx.who.who)
    if status == AlertStatus.resolved:
        ctx.extra.update(resolved_at=now, resolved_by=ctx.who.who)


# ---------------------------------------------------------------- measurement time zones


def measurement_to_row(values: dict[str, Any]) -> dict[str, Any]:
    observed = values.get("observed_at")
    offset = observed.utcoffset() if isinstance(observed, datetime) else None
    if offset is not None:
        values["observed_offset"] = int(offset.total_seconds() // 60)
    return values


@cache
def _zone(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


def measurement_to_out(data: dict[str, Any]) -> dict[str, Any]:
    """``observed_at`` keeps the offset the client sent it with."""
    offset = data.pop("observed_offset", 0) or 0
    observed = data.get("observed_at")
    if isinstance(observed, datetime):
        data["observed_at"] = observed.astimezone(_zone(offset))
    return data


# ---------------------------------------------------------------- safety first


def risk_reasons(marker: dict[str, Any], items: list[int] | None, value: float) -> list[str]:
    if not marker.get("instrument"):
        return []
    return INSTRUMENTS[marker["instrument"]].risk_reasons(items, value)


async def open_alert_for(
    conn: AsyncConnection, who: Principal, measurement: dict[str, Any], reasons: list[str]
) -> dict[str, Any]:
    """One alert per risk measurement, in the measurement's transaction."""
    body = SafetyAlertIn(client_id=measurement["client_id"], reason="; ".join(reasons),
                         measurement_id=measurement["id"])
    alert = await service.create(conn, who, safety_alerts, body)
    metrics.SAFETY_ALERTS_OPENED.inc()
    return alert


async def measurement_after_write(
    conn: AsyncConnection, who: Principal, record: dict[str, Any], action: str
) -> dict[str, Any]:
    if action != "created":
        return record
    marker = await service.get(conn, who, outcome_markers, record["marker_id"])
    reasons = risk_reasons(marker, record.get("items"), record["value"])
    record["safety_alert"] = await open_alert_for(conn, who, record, reasons) if reasons else None
    return record


o_create, o_patch, o_out = schemas(OutcomeMarkerIn)
outcome_markers = register(Collection(
    name="outcome-markers", type_name="outcome_marker", resource="OutcomeMarker", title="Outcome markers",
    table=OutcomeMarker.__table__, create=o_create, patch=o_patch, out=o_out,
    refs=[Ref("goal_id", "goals")], rules=[marker_kind_matches_instrument], filters=["goal_id"],
    children={"measurements": "marker_id"},
    description="What is measured: frequency, duration, confidence, recovery time, instruments, mood.",
))

a_create, a_patch, a_out = schemas(SafetyAlertIn, extra_out={
    "acknowledged_at": (datetime | None, None), "acknowledged_by": (str | None, None),
    "resolved_at": (datetime | None, None), "resolved_by": (str | None, None),
})
safety_alerts = register(Collection(
    name="safety-alerts", type_name="safety_alert", resource="SafetyAlert", title="Safety alerts",
    table=SafetyAlert.__table__, create=a_create, patch=a_patch, out=a_out,
    refs=[Ref("measurement_id", "measurements")], rules=[alert_status_stamps], deletable=False,
    description="Raised by the service when a measurement signals risk; never deleted, only resolved.",
))

ms_create, ms_patch, ms_out = schemas(MeasurementIn, extra_out={"safety_alert": (a_out | None, None)})
measurements = register(Collection(
    name="measurements", type_name="measurement", resource="Measurement", title="Measurements",
    table=Measurement.__table__, create=ms_create, patch=ms_patch, out=ms_out,
    refs=[Ref("marker_id", "outcome-markers")], rules=[measurement_fits_marker], filters=["marker_id"],
    to_row=measurement_to_row, to_out=measurement_to_out, after_write=measurement_after_write,
    out_sql={"observed_at": lambda t: iso_datetime(t.c.observed_at, t.c.observed_offset)},  # as to_out writes it
    description="One observed value of a marker; instruments are scored by the service.",
))
