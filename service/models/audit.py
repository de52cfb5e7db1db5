"""The audit trail: who read or wrote which client records, when, from where, and with what outcome.

Append-only: the service role may INSERT and SELECT rows of its organization, never UPDATE or DELETE; a
patient-context transaction SELECTs only the rows about its patient alone. Rows without an organization
(requests refused before any was known: no valid token) are written by the definer function
``audit_anonymous`` only, which writes nothing else (migration 0010).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, Integer, Text, Uuid, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base

AuditAction = Literal["read", "search", "create", "update", "delete", "upsert", "export", "import", "purge", "denied"]
AuditOutcome = Literal["success", "denied", "not_found", "error"]
ACTIONS: tuple[str, ...] = get_args(AuditAction)
OUTCOMES: tuple[str, ...] = get_args(AuditOutcome)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class AuditEvent(Base):
    """One row per request (per resource type touched), listing the ids it read or wrote."""

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint(_in("action", ACTIONS), name="action"),
        CheckConstraint(_in("outcome", OUTCOMES), name="outcome"),
        Index("ix_audit_events_org_id_at", "org_id", "at"),
        Index("ix_audit_events_client_ids", "client_ids", postgresql_using="gin"),
    )

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, server_default=func.uuid_time_ordered())
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True))  # insertion order, for paging
    org_id: Mapped[UUID | None] = mapped_column(Uuid)  # null: refused before it was known (audit_anonymous)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    app_id: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    resource_type: Mapped[str | None] = mapped_column(Text)
    resource_ids: Mapped[list[UUID]] = mapped_column(ARRAY(Uuid), server_default=text("'{}'"))
    client_ids: Mapped[list[UUID]] = mapped_column(ARRAY(Uuid), server_default=text("'{}'"))
    outcome: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(Text)
    method: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
