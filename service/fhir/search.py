"""FHIR search over our collections: parameters to SQL, keyset paging with an opaque cursor.

One search may span several collections (an Observation is a measurement, a strength, a protective factor
or an exception), so each collection contributes ``(kind, id, sort key)`` rows to a UNION ALL, ordered by
``(sort key, kind, id)``; the cursor is the last row's key, so pages never skip or repeat a record.
Every part starts from ``readable()``: the organization (and patient) of the token, as everywhere.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import False_
from sqlalchemy.types import Integer

from service import cursors
from service.auth.principal import Principal
from service.collections.registry import REGISTRY
from service.collections.repository import readable, readable_record
from service.collections.service import serialize
from service.domain.enums import AlertStatus, GoalLifecycle
from service.domain.instruments import INSTRUMENTS
from service.errors import ValidationFailed
from service.fhir import codes as c
from service.fhir.mapping import OBSERVATION_KINDS, parse_observation_id
from service.fhir.questionnaires import instrument_of
from service.fhir.urls import BadSearch
from service.models import ExternalId

MAX_COUNT = 500
DEFAULT_COUNT = 50




# ---------------------------------------------------------------- parameter parsing


@dataclass(frozen=True)
class Token:
    system: str | None  # None: any system; "": no system
    code: str


def tokens(value: str) -> list[Token]:
    out = []
    for part in value.split(","):
        if not part:
            continue
        if "|" in part:
            system, _, code = part.partition("|")
            out.append(Token(system, code))
        else:
            out.append(Token(None, part))
    return out


def token_matches(token: Token, system: str, code: str) -> bool:
    return token.code == code and (token.system is None or token.system == system)


def reference_id(value: str, resource_type: str = "Patient") -> UUID | None:
    """``Patient/<id>``, a full URL ending so, or a bare id; None when it cannot name a record."""
    text = value.rstrip("/")
    if "/" in text:
        parts = text.split("/")
        if len(parts) < 2 or parts[-2] != resource_type:
            return None
        text = parts[-1]
    try:
        return UUID(text)
    except ValueError:
        return None


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)?)?$")
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")


def date_condition(column: ColumnElement[Any], raw: str, name: str) -> ColumnElement[bool]:
    prefix = raw[:2] if raw[:2].isalpha() else "eq"
    value = raw[2:] if raw[:2].isalpha() else raw
    if prefix not in PREFIXES:
        raise BadSearch(f"{name}: the prefix {prefix!r} is not supported (use {', '.join(PREFIXES)})")
    m = _DATE.match(value)
    if not m:
        raise BadSearch(f"{name}: {value!r} is not a FHIR date or dateTime (a time needs a time zone)")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        if hour is not None:
            tz = "+00:00" if zone == "Z" else zone
            start = datetime.fromisoformat(f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{fraction or ''}{tz}")
            end = start + (timedelta(microseconds=1) if fraction else timedelta(seconds=1) if second
                           else timedelta(minutes=1))
        elif day is not None:
            start = datetime(int(year), int(month), int(day), tzinfo=UTC)
            end = start + timedelta(days=1)
        elif month is not None:
            start = datetime(int(year), int(month), 1, tzinfo=UTC)
            end = datetime(int(year) + (month == "12"), int(month) % 12 + 1, 1, tzinfo=UTC)
        else:
            start = datetime(int(year), 1, 1, tzinfo=UTC)
            end = datetime(int(year) + 1, 1, 1, tzinfo=UTC)
    except ValueError as exc:
        raise BadSearch(f"{name}: {value!r} is not a valid date") from exc
    return {
        "eq": and_(column >= start, column < end), "ne": not_(and_(column >= start, column < end)),
        "gt": column >= end, "ge": column >= start, "lt": column < start, "le": column < end,
    }[prefix]


def identifier_condition(collection: str, table: Any, who: Principal, value: str) -> ColumnElement[bool]:
    conds = []
    for tok in tokens(value):
        if not tok.system or not tok.code:
            raise BadSearch("identifier: expected system|value")
        if collection == "measurements":
            conds.append(and_(table.c.source == tok.system, table.c.external_id == tok.code))
        else:
            ext = ExternalId.__table__
            conds.append(table.c.id.in_(select(ext.c.record_id).where(
                ext.c.org_id == who.org_id, ext.c.collection == collection, ext.c.system == tok.system,
                ext.c.value == tok.code)))
    return or_(*conds) if conds else false()


# ---------------------------------------------------------------- the query


@dataclass
class Part:
    collection: str
    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    sort: Callable[[Any], Any] = lambda t: t.c.created_at


@dataclass
class Page:
    records: list[tuple[str, dict[str, Any]]]  # (collection, record), in order
    next_cursor: str | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = (-62135596800 * 10**6, 253402300799 * 10**6)  # years 1 to 9999


def encode_cursor(key: tuple[Any, int, UUID]) -> str:
    micros = (key[0] - _EPOCH) // timedelta(microseconds=1)
    return cursors.FHIR.encode(micros, key[1], key[2].bytes)


def decode_cursor(cursor: str) -> tuple[datetime, int, UUID]:
    try:
        micros, k, i = cursors.FHIR.decode(cursor, "_cursor")
    except ValidationFailed as exc:
        raise BadSearch("_cursor: not a cursor this server issued") from exc
    micros = min(max(micros, _MICROS[0]), _MICROS[1])
    return _EPOCH + timedelta(microseconds=micros), int(k), UUID(bytes=i)


async def run(conn: AsyncConnection, who: Principal, parts: list[Part], *, count: int, cursor: str | None,
              descending: bool = False) -> Page:
    after_key = decode_cursor(cursor) if cursor else None  # a bad cursor is a 400 even when nothing can match
    live = [p for p in parts if not any(isinstance(cond, False_) for cond in p.conditions)]
    if not live:
        return Page([], None)
    order_of = {name: i for i, name in enumerate(REGISTRY)}  # a stable number per collection, for the cursor
    by_order = {order_of[p.collection]: p.collection for p in live}
    selects: list[Select[Any]] = []
    for part in live:
        table = REGISTRY[part.collection].table
        stmt = readable(table, who).where(table.c.deleted_at.is_(None), *part.conditions)
        selects.append(stmt.with_only_columns(
            cast(literal(order_of[part.collection]), Integer).label("k"), table.c.id.label("id"),
            part.sort(table).label("d")))
    sub = (union_all(*selects) if len(selects) > 1 else selects[0]).subquery()
    key = tuple_(sub.c.d, sub.c.k, sub.c.id)
    page = select(sub.c.k, sub.c.id, sub.c.d)
    if after_key:
        d, k, i = after_key
        after = tuple_(literal(d), cast(literal(k), Integer), literal(i))
        page = page.where(key < after if descending else key > after)
    order = [sub.c.d.desc(), sub.c.k.desc(), sub.c.id.desc()] if descending else [sub.c.d, sub.c.k, sub.c.id]
    rows = (await conn.execute(page.order_by(*order).limit(count + 1))).all()
    more = len(rows) > count
    rows = rows[:count]
    by_kind: dict[int, list[UUID]] = {}
    for row in rows:
        by_kind.setdefault(row.k, []).append(row.id)
    loaded: dict[tuple[int, UUID], dict[str, Any]] = {}
    for k, ids in by_kind.items():
        coll = REGISTRY[by_order[k]]
        for rec in (await conn.execute(readable_record(coll, who).where(coll.table.c.id.in_(ids)))).all():
            loaded[(k, rec.id)] = serialize(coll, rec)
    records = [(by_order[r.k], loaded[(r.k, r.id)]) for r in rows if (r.k, r.id) in loaded]
    next_cursor = encode_cursor((rows[-1].d, rows[-1].k, rows[-1].id)) if more and rows else None
    return Page(records, next_cursor)


async def load_markers(conn: AsyncConnection, who: Principal, ids: set[Any]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    coll = REGISTRY["outcome-markers"]
    rows = (await conn.execute(readable(coll.table, who).where(coll.table.c.id.in_(list(ids))))).all()
    return {str(r.id): serialize(coll, r) for r in rows}


async def with_alert_ids(conn: AsyncConnection, who: Principal, records: list[tuple[str, dict[str, Any]]],
                         as_of: datetime | None = None) -> None:
    """Give each measurement record that lacks them (a history version: the history keeps stored fields only)
    its ``safety_alert_ids``, as a read computes them: the alerts it opened, oldest first. Alerts are never
    deleted and their ``measurement_id`` never changes, so ``as_of`` (alerts opened at or before it: an export's
    transactionTime) gives them as they were."""
    missing = [rec for collection, rec in records if collection == "measurements" and "safety_alert_ids" not in rec]
    if not missing:
        return
    table = REGISTRY["safety-alerts"].table
    stmt = readable(table, who).where(table.c.measurement_id.in_([rec["id"] for rec in missing])).with_only_columns(
        table.c.measurement_id, table.c.id).order_by(table.c.created_at, table.c.id)
    if as_of is not None:
        stmt = stmt.where(table.c.created_at <= as_of)
    opened: dict[str, list[Any]] = {}
    for row in (await conn.execute(stmt)).all():
        opened.setdefault(str(row.measurement_id), []).append(row.id)
    for rec in missing:
        rec["safety_alert_ids"] = opened.get(str(rec["id"]), [])


# ---------------------------------------------------------------- per resource type


def _common(part: Part, who: Principal, params: dict[str, list[str]]) -> Part:
    table = REGISTRY[part.collection].table
    for raw in params.get("_lastUpdated", []):
        part.conditions.append(date_condition(table.c.updated_at, raw, "_lastUpdated"))
    for raw in params.get("identifier", []):
        part.conditions.append(identifier_condition(part.collection, table, who, raw))
    for raw in params.get("_id", []):
        ids = [_own_id(part.collection, v) for v in raw.split(",")]
        part.conditions.append(table.c.id.in_([i for i in ids if i]) if any(ids) else false())
    return part


def _own_id(collection: str, value: str) -> UUID | None:
    """The record id a resource id names, when it names one of this collection."""
    if collection in OBSERVATION_KINDS:
        found = parse_observation_id(value)
        return found[1] if found and found[0] == collection else None
    try:
        return UUID(value)
    except ValueError:
        return None


def _patient(part: Part, params: dict[str, list[str]], names: tuple[str, ...] = ("patient", "subject")) -> Part:
    table = REGISTRY[part.collection].table
    for name in names:
        for raw in params.get(name, []):
            ids = [reference_id(v) for v in raw.split(",")]
            ids = [i for i in ids if i]
            part.conditions.append(table.c.client_id.in_(ids) if ids else false())
    return part


def patient_parts(who: Principal, params: dict[str, list[str]]) -> list[Part]:
    return [_common(Part("clients"), who, params)]


LIFECYCLE = {c.code_of(v): v.value for v in GoalLifecycle}


def goal_parts(who: Principal, params: dict[str, list[str]]) -> list[Part]:
    part = _patient(_common(Part("goals"), who, params), params)
    table = REGISTRY["goals"].table
    for raw in params.get("lifecycle-status", []):
        wanted = [LIFECYCLE[t.code] for t in tokens(raw) if t.code in LIFECYCLE]
        part.conditions.append(table.c.lifecycle.in_(wanted) if wanted else false())
    return [part]


FLAG_STATUS = {"active": [AlertStatus.open.value, AlertStatus.acknowledged.value],
               "inactive": [AlertStatus.resolved.value]}


def flag_parts(who: Principal, params: dict[str, list[str]]) -> list[Part]:
    part = _patient(_common(Part("safety-alerts"), who, params), params)
    table = REGISTRY["safety-alerts"].table
    for raw in params.get("status", []):
        wanted = [s for t in tokens(raw) for s in FLAG_STATUS.get(t.code, [])]
        part.conditions.append(table.c.status.in_(wanted) if wanted else false())
    for raw in params.get("category", []):
        if not any(token_matches(t, c.FLAG_CATEGORY, "safety") for t in tokens(raw)):
            part.conditions.append(false())
    return [part]


# Static codes of the non-measurement Observation kinds: (system, code) of category and of code.
STATIC_CATEGORIES = {
    "strengths": [(c.OBS_CATEGORY, "survey"), (c.system("observation-category"), "strength")],
    "protective-factors": [(c.OBS_CATEGORY, "social-history"), (c.system("observation-category"), "protective-factor")],
    "exceptions": [(c.OBS_CATEGORY, "survey"), (c.system("observation-category"), "exception")],
}
DYNAMIC_CATEGORIES = {  # our CodeSystem -> column, for category=<system>|<code>
    "strengths": {c.system("strength-domain"): "domain", c.system("strength-kind"): "kind"},
    "protective-factors": {c.system("protective-factor-category"): "category"},
}
STATIC_CODES = {
    "strengths": [(c.ELTSS, "strength")],
    "protective-factors": [(c.ELTSS, "strength"), (c.system("observation-code"), "protective-factor")],
    "exceptions": [(c.system("observation-code"), "exception")],
}
OBSERVATION_RESOURCES = {"measurements": "Measurement", "strengths": "Strength",
                         "protective-factors": "ProtectiveFactor", "exceptions": "Exception"}


def _category_condition(collection: str, table: Any, raw: str) -> ColumnElement[bool]:
    conds: list[ColumnElement[bool]] = []
    for tok in tokens(raw):
        if collection == "measurements":
            if tok.system in (None, c.OBS_CATEGORY):
                kinds = [k.value for k, cat in c.MARKER_CATEGORY.items() if cat == tok.code]
                if kinds:
                    markers = REGISTRY["outcome-markers"].table
                    conds.append(table.c.marker_id.in_(select(markers.c.id).where(markers.c.kind.in_(kinds))))
            continue
        if any(token_matches(tok, s, code) for s, code in STATIC_CATEGORIES[collection]):
            conds.append(true())
        for system, column in DYNAMIC_CATEGORIES.get(collection, {}).items():
            if tok.system in (None, system):
                conds.append(table.c[column] == c.value_of(tok.code))
    return or_(*conds) if conds else false()


def _code_condition(collection: str, table: Any, raw: str) -> ColumnElement[bool]:
    conds: list[ColumnElement[bool]] = []
    for tok in tokens(raw):
        if collection != "measurements":
            if any(token_matches(tok, s, code) for s, code in STATIC_CODES[collection]):
                conds.append(true())
            continue
        markers = REGISTRY["outcome-markers"].table
        marker_conds: list[ColumnElement[bool]] = []
        if tok.system in (None, c.LOINC):
            instruments = [k for k, spec in INSTRUMENTS.items() if tok.code in (spec.panel_loinc, spec.total_loinc)]
            marker_conds.append(markers.c.code == tok.code)
            if instruments:
                marker_conds.append(markers.c.instrument.in_(instruments))
        if tok.system in (None, c.system("outcome-marker")):
            with contextlib.suppress(ValueError):
                marker_conds.append(markers.c.id == UUID(tok.code))
        if marker_conds:
            conds.append(table.c.marker_id.in_(select(markers.c.id).where(or_(*marker_conds))))
    return or_(*conds) if conds else false()


def observation_parts(who: Principal, params: dict[str, list[str]], collections: list[str]) -> list[Part]:
    parts = []
    for collection in collections:
        table = REGISTRY[collection].table
        if collection == "measurements":
            sort: Callable[[Any], Any] = lambda t: t.c.observed_at  # noqa: E731
        elif collection == "exceptions":
            sort = lambda t: func.coalesce(t.c.observed_at, t.c.created_at)  # noqa: E731
        else:
            sort = lambda t: t.c.created_at  # noqa: E731
        part = _patient(_common(Part(collection, sort=sort), who, params), params)
        for raw in params.get("category", []):
            part.conditions.append(_category_condition(collection, table, raw))
        for raw in params.get("code", []):
            part.conditions.append(_code_condition(collection, table, raw))
        for raw in params.get("date", []):
            part.conditions.append(date_condition(sort(table), raw, "date"))
        parts.append(part)
    return parts



def instrument_markers(instruments: list[str]) -> ColumnElement[bool]:
    markers = REGISTRY["outcome-markers"].table
    return REGISTRY["measurements"].table.c.marker_id.in_(
        select(markers.c.id).where(markers.c.instrument.in_(instruments)))


def questionnaire_parts(who: Principal, params: dict[str, list[str]]) -> list[Part]:
    """QuestionnaireResponse: the measurements of instrument markers (PHQ-9, GAD-7)."""
    part = _patient(_common(Part("measurements", sort=lambda t: t.c.observed_at), who, params), params)
    table = REGISTRY["measurements"].table
    part.conditions.append(instrument_markers(list(INSTRUMENTS)))
    for raw in params.get("questionnaire", []):
        specs = [instrument_of(v) for v in raw.split(",") if v]
        wanted = [spec.key for spec in specs if spec is not None]
        part.conditions.append(instrument_markers(wanted) if wanted else false())
    for raw in params.get("authored", []):
        part.conditions.append(date_condition(table.c.observed_at, raw, "authored"))
    return [part]
