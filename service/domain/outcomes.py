"""Outcome markers, measurements (instruments scored by the service) and the safety alerts they raise."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, Literal
from uuid import UUID

from pydantic import Field, create_model
from sqlalchemy import ColumnElement, FromClause, Uuid, cast, func, literal_column, select, text
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


def fit_join(instrument: str, low: str, high: str, items: str, value: str) -> str:
    """The rule that a measurement fits its marker, as SQL: ``LEFT JOIN LATERAL (...) AS fit ON true`` over five
    SQL expressions (the marker's instrument, min and max; the measurement's items and value), giving
    ``fit.code`` (null when it fits, else the rule it breaks), ``fit.value`` (what is stored: an instrument's
    total, which the service scores, else the value sent), ``fit.total`` (an instrument's item sum) and
    ``fit.bad`` (the 0-based indices of out-of-range items). The one place this rule lives: a single write asks it
    with one row (``measurement_fits_marker``), a batch in its write statement for every item
    (``measurement_batch``); ``fit_problem`` words what it answers. The instruments' item counts and ranges are the
    registry's, rendered inline. Checked in the order a client fixes them: the items' presence, their count,
    their range, the value sent against the total, then the marker's range."""
    specs = ", ".join(f"('{s.key}', {s.n_items}, {s.item_min}, {s.item_max})" for s in INSTRUMENTS.values())
    return f"""LEFT JOIN LATERAL (
  SELECT CASE WHEN spec.key IS NOT NULL THEN
           CASE WHEN {items} IS NULL THEN 'items_required'
                WHEN cardinality({items}) <> spec.n_items THEN 'items_incomplete'
                WHEN cardinality(s.bad) > 0 THEN 'item_out_of_range'
                WHEN {value} IS NOT NULL AND {value} <> s.total THEN 'value_mismatch'
                WHEN s.total < {low} OR s.total > {high} THEN 'value_out_of_range' END
         WHEN {items} IS NOT NULL THEN 'items_not_allowed'
         WHEN {value} IS NULL THEN 'value_required'
         WHEN {value} < {low} OR {value} > {high} THEN 'value_out_of_range' END AS code,
         CASE WHEN spec.key IS NOT NULL THEN CAST(s.total AS float8) ELSE {value} END AS value,
         s.total, s.bad
  FROM (VALUES {specs}) AS spec(key, n_items, item_min, item_max)
  RIGHT JOIN (SELECT) AS one ON spec.key = CAST({instrument} AS text)
  LEFT JOIN LATERAL (
    SELECT (SELECT sum(x) FROM unnest({items}) AS x) AS total,
           ARRAY(SELECT n - 1 FROM unnest({items}) WITH ORDINALITY AS u(x, n)
                  WHERE x NOT BETWEEN spec.item_min AND spec.item_max) AS bad
  ) AS s ON spec.key IS NOT NULL
) AS fit ON true"""


def fit_problem(marker: dict[str, Any], items: list[int] | None, value: float | None, code: str | None,
                total: int | None, bad: list[int] | None) -> ValidationFailed | None:
    """The problem of a measurement ``fit_join`` found not to fit ``marker`` (None when it fits), in words."""
    if code is None:
        return None
    spec = INSTRUMENTS[marker["instrument"]] if marker["instrument"] else None
    if code == "value_out_of_range":
        shown = float(total) if spec is not None and total is not None else value
        return RuleViolation("value", f"value {shown:g} is outside the marker's range [{marker['min']}, "
                             f"{marker['max']}]", code)
    if spec is None:
        return RuleViolation("items", "Item responses belong to instrument markers only", code) \
            if code == "items_not_allowed" else RuleViolation("value", "A measurement needs a value", code)
    if code == "items_required":
        return RuleViolation("items", f"{spec.name} needs its {spec.n_items} item responses", code)
    if code == "items_incomplete":
        return RuleViolation("items", f"{spec.name} has {spec.n_items} items, got {len(items or [])}", code)
    if code == "item_out_of_range":
        return ValidationFailed(f"{spec.name} item responses are out of range", errors=[
            field_error(f"items.{i}", f"must be between {spec.item_min} and {spec.item_max}", code)
            for i in bad or []])
    return RuleViolation("value", f"value {value:g} is not the {spec.name} total {total}", code)  # value_mismatch


_FIT_ONE = text(
    "SELECT fit.code, fit.value, fit.total, fit.bad FROM (VALUES (CAST(:instrument AS text), CAST(:low AS float8), "
    "CAST(:high AS float8), CAST(:items AS smallint[]), CAST(:value AS float8))) AS x(instrument, low, high, items, "
    "value)\n" + fit_join("x.instrument", "x.low", "x.high", "x.items", "x.value"))


async def measurement_fits_marker(ctx: RuleContext) -> None:
    """A single write's measurement against its marker, asked of ``fit_join`` (a batch asks it in its statement)."""
    marker = ctx.ref("marker_id")
    if marker is None:
        return
    items = ctx.data.get("items")
    value = ctx.data.get("value")
    if ctx.current is not None and ctx.changed("items") and not ctx.changed("value"):
        value = None  # corrected items without a new value: the stored total is recomputed, not compared
    fit = (await ctx.conn.execute(_FIT_ONE, {"instrument": marker["instrument"], "low": marker["min"],
                                             "high": marker["max"], "items": items, "value": value})).one()
    problem = fit_problem(marker, items, value, fit.code, fit.total, fit.bad)
    if problem is not None:
        raise problem
    if marker["instrument"]:
        ctx.extra["value"] = ctx.data["value"] = fit.value


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
