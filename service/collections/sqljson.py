"""SQL expressions that write values as the service's JSON writes them (orjson and ``isoformat``), for reads whose
JSON PostgreSQL builds (GraphQL compiled to SQL): the same text as the Python path, byte for byte for timestamps,
cursors and whole-valued floats.

Migration 0017 holds a frozen copy of ``iso_datetime`` and ``float_json`` in ``measurement_first_version`` (a
batch-created measurement's first version, read from its row): a change to the text these write needs a migration
that replaces that function too (``tests/sync/test_batch_rows.py`` compares its versions with a single create's)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, Interval, Numeric, Text, case, cast, func, literal_column
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.sql.elements import ColumnElement

from service.api import cursors

_SECONDS = '\'YYYY-MM-DD"T"HH24:MI:SS\''
_MICROS = '\'YYYY-MM-DD"T"HH24:MI:SS.US\''
_MINUTE = literal_column("interval '1 minute'", Interval)


def iso_datetime(ts: ColumnElement[Any], offset_minutes: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
    """``datetime.isoformat()`` of a timestamptz (as orjson writes it too): in UTC, or in the given offset from UTC
    (minutes) with that offset written ``+HH:MM``; microseconds only when they are not zero. Constants are written
    in the SQL, not bound: nothing varies but the columns."""
    local: ColumnElement[Any] = func.timezone(literal_column("'UTC'"), ts)
    if offset_minutes is not None:
        local = local + offset_minutes * _MINUTE
    whole = func.date_trunc(literal_column("'second'"), ts) == ts
    fmt = case((whole, literal_column(_SECONDS)), else_=literal_column(_MICROS))
    text = func.to_char(local, fmt)
    if offset_minutes is None:
        return text.concat(literal_column("'+00:00'"))
    sign = case((offset_minutes < literal_column("0", Integer), literal_column("'-'")), else_=literal_column("'+'"))
    return text.concat(sign).concat(func.to_char(func.abs(offset_minutes) * _MINUTE, literal_column("'HH24:MI'")))


def float_json(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """A float8 as JSON the way Python writes a float: a whole value with ``.0`` (3.0, where PostgreSQL writes 3);
    others as PostgreSQL writes them (the shortest text that reads back the same, as Python's)."""
    whole = (value == func.trunc(value)) & (func.abs(value) < literal_column("1e15"))
    text = case((whole, cast(cast(value, Numeric), Text).concat(literal_column("'.0'"))),
                else_=cast(value, Text))
    return cast(text, JSON)


def record_cursor(record_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """``repository.encode_cursor(id)``: base64url, no padding, of the records cursor's tag and the id's 16 bytes."""
    tag: ColumnElement[bytes] = literal_column(f"'\\x{cursors.RECORDS.tag.hex()}'::bytea")
    raw = tag.op("||")(func.uuid_send(record_id))
    return func.translate(func.rtrim(func.encode(raw, literal_column("'base64'")), literal_column("'='")),
                          literal_column("'+/'"), literal_column("'-_'"))
