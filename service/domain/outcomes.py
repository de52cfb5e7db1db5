"""Outcome markers, measurements (instruments scored by the service) and the safety alerts they raise."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, Literal
from uuid import UUID

from pydantic import Field, create_model
from sqlalchemy import ColumnElement, FromClause, Uuid, cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, array_agg

from service.collections.registry import Collection, Ref, RuleContext
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
from service.domain.enums import AlertSeverity, AlertStatus, Direction, Instrument, MarkerKind, TriggerKind
from service.domain.instruments import INSTRUMENTS, band_case
from service.domain.safety import alert_raised_by_hand, alert_status_moves, measurement_after_write, severity_rank
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
    min_change: Finite | None = Field(
        default=None, gt=0,
        description="The smallest change that matters (in the marker's unit): progress calls a goal off track when "
                    "it has not improved by this much in 4 weeks. Instruments: their reliable-change threshold "
                    "(PHQ-9 6, GAD-7 4), set by the service; others: a tenth of max - min when not given",
    )
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


class AlertTrigger(Strict):
    """What in a measurement opened the alert; set by the service, never changed."""

    kind: TriggerKind
    instrument: Instrument
    item9: SmallInt | None = Field(default=None, description="PHQ-9 item 9 (0-3); null for other instruments")
    total: SmallInt
    band: ShortText = Field(description="The total's severity band")


class SafetyAlertIn(Strict):
    """A safety alert a clinician raises by hand (the service opens those of measurements itself)."""

    client_id: UUID
    reason: RequiredText = Field(description="What was observed; never changes")
    measurement_id: UUID | None = Field(default=None, description="The measurement it concerns, if any")
    severity: AlertSeverity | None = Field(
        default=None, description="urgent or high; default high, and on a measurement never below its trigger's")
    observed_at: Timestamp | None = Field(
        default=None, description="When the risk was observed: default now; on a measurement, the measurement's")
    external_ids: ExternalIds = Field(default_factory=list)


IMMUTABLE: dict[str, Any] = {"reason": RequiredText, "trigger": AlertTrigger, "severity": AlertSeverity,
                             "measurement_id": UUID, "observed_at": Timestamp}


# ---------------------------------------------------------------- rules


async def marker_kind_matches_instrument(ctx: RuleContext) -> None:
    kind, instrument = ctx.data.get("kind"), ctx.data.get("instrument")
    if kind == MarkerKind.instrument and not instrument:
        raise RuleViolation("instrument", "An instrument marker names its instrument", "instrument_required")
    if instrument and kind != MarkerKind.instrument:
        raise RuleViolation("kind", "A marker with an instrument has kind 'instrument'", "instrument_kind_mismatch")
    if instrument:
        spec = INSTRUMENTS[str(instrument)]
        sent = ctx.data.get("min_change")
        if sent is not None and sent != spec.reliable_change and ctx.changed("min_change"):
            raise RuleViolation("min_change", f"A {spec.name} marker's minimal change is its reliable-change "
                                f"threshold, {spec.reliable_change:g} points", "min_change_fixed")
        defaults = {"min": 0.0, "max": float(spec.max_total), "unit": spec.unit, "code": spec.total_loinc,
                    "direction": spec.direction, "min_change": float(spec.reliable_change)}
        for name, value in defaults.items():
            if ctx.data.get(name) is None or name in ("min", "max", "direction", "min_change"):
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
    if ctx.current is not None and ctx.changed("items") and not ctx.changed("value"):
        value = None  # corrected items without a new value: the stored total is recomputed, not compared
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


# ---------------------------------------------------------------- what reads compute


def alert_ids(table: FromClause) -> ColumnElement[Any]:
    """The ids of the alerts a measurement opened, oldest first (an empty list when none)."""
    alerts = SafetyAlert.__table__
    ids = (select(array_agg(aggregate_order_by(alerts.c.id, alerts.c.created_at, alerts.c.id)))
           .where(alerts.c.org_id == table.c.org_id, alerts.c.measurement_id == table.c.id)
           .correlate(table).scalar_subquery())
    return func.coalesce(ids, cast(literal_column("'{}'"), ARRAY(Uuid())))


o_create, o_patch, o_out = schemas(OutcomeMarkerIn)
outcome_markers = Collection(
    name="outcome-markers", type_name="outcome_marker", resource="OutcomeMarker", title="Outcome markers",
    table=OutcomeMarker.__table__, create=o_create, patch=o_patch, out=o_out,
    refs=[Ref("goal_id", "goals")], rules=[marker_kind_matches_instrument], filters=["goal_id"],
    children={"measurements": "marker_id"}, latest={"latest_measurement": ("measurements", "marker_id")},
    description="What is measured: frequency, duration, confidence, recovery time, instruments, mood.",
)

a_create, _, a_out = schemas(SafetyAlertIn, extra_out={
    "severity": (AlertSeverity, ...), "observed_at": (datetime, Field(description="When the risk was observed")),
    "trigger": (AlertTrigger | None, Field(None, description="Null for an alert raised by a clinician")),
    "status": (AlertStatus, ...), "opened_at": (datetime, ...),
    "acknowledged_at": (datetime | None, None), "acknowledged_by": (str | None, None),
    "resolved_at": (datetime | None, None), "resolved_by": (str | None, None),
    "resolution_note": (str | None, None),
})
a_patch_fields: dict[str, Any] = {
    "status": (AlertStatus, Field(None, description="open -> acknowledged, open or acknowledged -> resolved, "
                                                    "resolved -> open")),
    "resolution_note": (Text | None, Field(None, description="What was done; required to resolve")),
    "external_ids": (ExternalIds, None),
    **{name: (annotation, Field(None, description="Never changes: a different value is a 422 immutable_field"))
       for name, annotation in IMMUTABLE.items()},
}
a_patch = create_model("SafetyAlertPatch", __base__=Strict, **a_patch_fields)
safety_alerts = Collection(
    name="safety-alerts", type_name="safety_alert", resource="SafetyAlert", title="Safety alerts",
    table=SafetyAlert.__table__, create=a_create, patch=a_patch, out=a_out,
    refs=[Ref("measurement_id", "measurements")], rules=[alert_raised_by_hand, alert_status_moves],
    filters=["measurement_id"], deletable=False, immutable=tuple(IMMUTABLE), opened_event=True,
    order=lambda table: (severity_rank(table), table.c.observed_at),
    description="Opened by the service when a measurement meets a safety trigger (or raised by a clinician); "
                "never deleted, only resolved. Listed urgent first, then oldest first.",
)

def measurement_band(table: FromClause) -> ColumnElement[Any]:
    """The severity band of an instrument measurement's total (null for other markers): a correlated subquery on
    the marker's instrument, with the bands of the instrument registry."""
    markers = OutcomeMarker.__table__
    return (select(band_case(markers.c.instrument, table.c.value))
            .where(markers.c.org_id == table.c.org_id, markers.c.id == table.c.marker_id)
            .correlate(table).scalar_subquery())


BAND = Literal["minimal", "mild", "moderate", "moderately_severe", "severe"]
ms_create, ms_patch, ms_out = schemas(MeasurementIn, extra_out={
    "band": (BAND | None, Field(default=None, description="Instruments: the severity band of the total "
                                                          "(PHQ-9 and GAD-7 bands); null for other markers")),
    "safety_alert": (a_out | None, Field(None, description="On a write: the alert it opened, if any")),
    "safety_alert_ids": (list[UUID], Field(description="The alerts this measurement opened, oldest first")),
})
measurements = Collection(
    name="measurements", type_name="measurement", resource="Measurement", title="Measurements",
    table=Measurement.__table__, create=ms_create, patch=ms_patch, out=ms_out,
    refs=[Ref("marker_id", "outcome-markers")], rules=[measurement_fits_marker], filters=["marker_id"],
    natural_key=("source", "external_id"), windows=("observed_at",),
    to_row=measurement_to_row, to_out=measurement_to_out, after_write=measurement_after_write,
    computed={"safety_alert_ids": alert_ids, "band": measurement_band},
    out_sql={"observed_at": lambda t: iso_datetime(t.c.observed_at, t.c.observed_offset)},  # as to_out writes it
    description="One observed value of a marker; instruments are scored by the service.",
)
