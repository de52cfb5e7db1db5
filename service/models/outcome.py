"""What is measured (outcome markers), the measurements, and the safety alerts they can raise."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, DateTime, Float, Index, SmallInteger, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.domain.enums import AlertSeverity, AlertStatus, Direction, Instrument, MarkerKind
from service.models.base import Base, ClientOwnedMixin, client_fk, compartment_column, enum_check, ref_fk


class OutcomeMarker(ClientOwnedMixin, Base):
    __tablename__ = "outcome_markers"
    __table_args__ = (
        client_fk(),
        ref_fk("goal_id", "goals"),
        Index("ix_outcome_markers_org_id_client_id", "org_id", "client_id"),
        Index("ix_outcome_markers_org_id_goal_id", "org_id", "goal_id"),
        enum_check("kind", MarkerKind),
        enum_check("instrument", Instrument, nullable=True),
        enum_check("direction", Direction),
        CheckConstraint("min_change IS NULL OR min_change > 0", name="min_change_positive"),
    )

    kind: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(Text)
    instrument: Mapped[str | None] = mapped_column(Text)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(Text)
    min_change: Mapped[float | None] = mapped_column(Float)
    goal_id: Mapped[UUID | None]


class Measurement(ClientOwnedMixin, Base):
    __tablename__ = "measurements"
    __table_args__ = (
        client_fk(),
        ref_fk("marker_id", "outcome_markers"),
        Index("ix_measurements_org_id_marker_id_observed_at", "org_id", "marker_id", "observed_at"),
        Index("ix_measurements_org_id_client_id", "org_id", "client_id"),
        Index(
            "uq_measurements_org_id_source_external_id_compartment", "org_id", "source", "external_id", "compartment",
            unique=True, postgresql_where=text("external_id IS NOT NULL"),
        ),
    )

    marker_id: Mapped[UUID]
    value: Mapped[float] = mapped_column(Float)
    items: Mapped[list[int] | None] = mapped_column(ARRAY(SmallInteger))
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    observed_offset: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    source: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    compartment: Mapped[UUID] = compartment_column()  # of (source, external_id): see ExternalId
    # Who wrote version 1 while version 1 is this row itself, without a history row (a batch-created measurement
    # not changed since); null once the history holds version 1 (migration 0017; models.records.RECORD_VERSIONS).
    first_version_by: Mapped[str | None] = mapped_column(Text)


class SafetyAlert(ClientOwnedMixin, Base):
    """Raised by the service (or a clinician); never deleted, only resolved.

    ``reason``, ``trigger``, ``severity``, ``measurement_id`` and ``observed_at`` never change; a measurement may
    have several alerts (one per triggering write), hence no unique index on ``measurement_id``.
    """

    __tablename__ = "safety_alerts"
    __table_args__ = (
        client_fk(),
        ref_fk("measurement_id", "measurements"),
        Index("ix_safety_alerts_org_id_client_id_status", "org_id", "client_id", "status"),
        Index("ix_safety_alerts_org_id_measurement_id", "org_id", "measurement_id"),
        enum_check("status", AlertStatus),
        enum_check("severity", AlertSeverity),
    )

    reason: Mapped[str] = mapped_column(Text)
    measurement_id: Mapped[UUID | None]
    trigger: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # null: raised by a clinician
    severity: Mapped[str] = mapped_column(Text)
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the measurement's
    status: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolution_note: Mapped[str | None] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(Text)
