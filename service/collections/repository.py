"""SELECTs, always starting from the principal-aware statement (row-level security enforces the same)."""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID

from sqlalchemy import Select, Table, select

from service.auth.principal import Principal
from service.errors import ValidationFailed


def readable(table: Table, who: Principal, *, client_column: str = "client_id") -> Select[Any]:
    stmt = select(table).where(table.c.org_id == who.org_id)
    if who.patient_id is not None:
        column = table.c.id if table.name == "clients" else table.c[client_column]
        stmt = stmt.where(column == who.patient_id)
    return stmt


def encode_cursor(last_id: UUID) -> str:
    return base64.urlsafe_b64encode(b"v1:" + last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if not raw.startswith(b"v1:") or len(raw) != 19:
            raise ValueError
        return UUID(bytes=raw[3:])
    except (ValueError, TypeError) as exc:
        raise ValidationFailed.on("cursor", "The cursor is not one this service issued", "invalid_cursor") from exc


def parse_identifier(value: str, field: str = "external_id") -> tuple[str, str]:
    system, sep, ident = value.partition("|")
    if not sep or not system or not ident or "\x00" in value or not value.isascii() and not _encodable(value):
        raise ValidationFailed.on(field, "Expected system|value", "invalid_identifier")
    return system, ident


def _encodable(value: str) -> bool:
    """No lone surrogate (JSON can carry one; PostgreSQL text cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
