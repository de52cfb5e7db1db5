"""SELECTs, always starting from the principal-aware statement (row-level security enforces the same)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Query
from sqlalchemy import Select, Table, select

from service import cursors
from service.auth.principal import Principal
from service.errors import ValidationFailed


def readable(table: Table, who: Principal, *, client_column: str = "client_id") -> Select[Any]:
    stmt = select(table).where(table.c.org_id == who.org_id)
    if who.patient_id is not None:
        column = table.c.id if table.name == "clients" else table.c[client_column]
        stmt = stmt.where(column == who.patient_id)
    return stmt


def encode_cursor(last_id: UUID) -> str:
    return cursors.RECORDS.encode(last_id.bytes)


def decode_cursor(cursor: str, field: str = "cursor") -> UUID:
    return UUID(bytes=cursors.RECORDS.decode(cursor, field)[0])


# system|value: a system without "|", a value, no NUL (PostgreSQL text cannot hold it).
IDENTIFIER_PATTERN = r"^[^|\x00]+\|[^\x00]+$"


def identifier_query(name: str, *, required: bool = False, description: str = "system|value") -> Any:
    """The ``identifier`` / ``external_id`` query parameter, declared once with its shape."""
    return Query(... if required else None, alias=name, max_length=1000, description=description,
                 json_schema_extra={"pattern": IDENTIFIER_PATTERN})


def parse_identifier(value: str, field: str = "external_id") -> tuple[str, str]:
    system, sep, ident = value.partition("|")
    if not sep or not system or not ident or "\x00" in value:
        raise ValidationFailed.on(field, "Expected system|value", "invalid_identifier")
    return system, ident
