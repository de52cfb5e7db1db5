"""FHIR Bulk Data export: jobs, the NDJSON files they write, and the files' contents in chunks.

File contents live in PostgreSQL (``bulk_export_chunks``), not on a pod's disk: any API replica can serve a
download, a job resumed by another worker appends to the same files, a pod move loses nothing, cancelling
removes a job's files in the same transaction, and row-level security guards the contents as it guards the
records they came from. docs/fhir.md says what this costs and when an object store would be the next step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base

JOB_STATUSES = ("accepted", "in-progress", "completed", "failed", "cancelled", "expired")
LEVELS = ("system", "patient", "group")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class BulkExportJob(Base):
    """One kick-off: what was asked (as the app and patient that asked), as of when, and how far it got."""

    __tablename__ = "bulk_export_jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        CheckConstraint(_in("level", LEVELS), name="level"),
        Index("ix_bulk_export_jobs_status_lease_until", "status", "lease_until"),
        Index("ix_bulk_export_jobs_org_id_app_id_status", "org_id", "app_id", "status"),
    )

    org_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    app_id: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(Text)  # the token's granted scopes, which the job exports under
    patient_id: Mapped[UUID | None] = mapped_column(Uuid)  # a patient-context token's patient
    level: Mapped[str] = mapped_column(Text)
    group_id: Mapped[UUID | None] = mapped_column(Uuid)
    plan: Mapped[list[Any]] = mapped_column(JSONB)  # [[FHIR type, collection], ...] in export order
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    request_url: Mapped[str] = mapped_column(Text)
    transaction_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    waiting_for: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    status: Mapped[str] = mapped_column(Text, server_default=text("'accepted'"))
    step: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    after_id: Mapped[UUID | None] = mapped_column(Uuid)
    resources: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_token: Mapped[UUID | None] = mapped_column(Uuid)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BulkExportFile(Base):
    """One NDJSON file of one resource type (a type may span several parts)."""

    __tablename__ = "bulk_export_files"
    __table_args__ = (
        ForeignKeyConstraint(["org_id", "job_id"], ["bulk_export_jobs.org_id", "bulk_export_jobs.id"],
                             ondelete="CASCADE"),
        UniqueConstraint("org_id", "job_id", "resource_type", "part"),
    )

    org_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    job_id: Mapped[UUID]
    resource_type: Mapped[str] = mapped_column(Text)
    part: Mapped[int] = mapped_column(Integer)
    lines: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BulkExportChunk(Base):
    """One page of a file: its NDJSON lines, and the ids they hold (for the download's audit and for erasure)."""

    __tablename__ = "bulk_export_chunks"
    __table_args__ = (
        ForeignKeyConstraint(["org_id", "file_id"], ["bulk_export_files.org_id", "bulk_export_files.id"],
                             ondelete="CASCADE"),
    )

    org_id: Mapped[UUID] = mapped_column(primary_key=True)
    file_id: Mapped[UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection: Mapped[str] = mapped_column(Text)
    record_ids: Mapped[list[UUID]] = mapped_column(ARRAY(Uuid))
    client_ids: Mapped[list[UUID]] = mapped_column(ARRAY(Uuid))
    lines: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
