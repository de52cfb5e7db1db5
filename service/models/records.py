"""What every write leaves behind: the version history, the change feed and the external-id index."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, compartment_column


class History(Base):
    """Every superseded version of every record, the deletion included, and the current one of every record but a
    batch-created measurement not changed since (whose version 1 is the record itself: ``RECORD_VERSIONS``). Written
    to; read through ``RECORD_VERSIONS``."""

    __tablename__ = "history"

    org_id: Mapped[UUID] = mapped_column(primary_key=True)
    collection: Mapped[str] = mapped_column(Text, primary_key=True)
    record_id: Mapped[UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[UUID | None]
    action: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    changed_by: Mapped[str | None] = mapped_column(Text)


# Every version of every record (migration 0017's view): the history's rows and the first versions that are still
# their measurement's row (``Measurement.first_version_by``), rendered as the history would hold them. Every reader
# of versions reads this; it runs as its caller, under both tables' row-level security. In a MetaData of its own:
# a view, not a table the schema's comparison or ``create_all`` should see.
RECORD_VERSIONS = Table(
    "record_versions", MetaData(),
    *(Column(c.name, c.type) for c in History.__table__.columns),
)


class Change(Base):
    """The change feed: one row per committed create, update or delete, holding no client data.

    ``txid`` is the writing transaction's id; readers never pass the oldest transaction still in
    progress, so a transaction that commits late cannot be skipped.
    """

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_org_id_txid_seq", "org_id", "txid", "seq"),)

    org_id: Mapped[UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger, server_default=text("(pg_current_xact_id()::text)::bigint"))
    collection: Mapped[str] = mapped_column(Text)
    record_id: Mapped[UUID]
    client_id: Mapped[UUID | None]
    action: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ExternalId(Base):
    """External identifiers (EHR ids) of records: unique per organization, collection, system, value and
    compartment. Identifiers written with a patient-context token live in that patient's compartment (the
    client's id), all others in the organization's (``ORG_WIDE``): to a patient token, an identifier another
    patient uses is an unknown one (CONTRACT.md section 2); among clinicians' and EHRs' writes identifiers
    stay unique per organization."""

    __tablename__ = "external_ids"
    __table_args__ = (Index("ix_external_ids_org_id_record_id", "org_id", "record_id"),)

    org_id: Mapped[UUID] = mapped_column(primary_key=True)
    collection: Mapped[str] = mapped_column(Text, primary_key=True)
    system: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text, primary_key=True)
    compartment: Mapped[UUID] = compartment_column(primary_key=True)
    record_id: Mapped[UUID]
    client_id: Mapped[UUID | None]


class IdempotencyKey(Base):
    """A POST's first response, replayed for the same key and body for at least 24 hours."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    org_id: Mapped[UUID] = mapped_column(primary_key=True)
    app_id: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    client_ids: Mapped[list[UUID]] = mapped_column(ARRAY(Uuid))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
