"""What is measured (outcome markers), the measurements, and the safety alerts they can raise."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import DateTime, Float, Index, SmallInteger, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from service.domain.enums import AlertStatus, Direction, Instrument, MarkerKind
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
    )

    kind: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(Text)
    instrument: Mapped[str | None] = mapped_column(Text)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(Text)
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


class SafetyAlert(ClientOwnedMixin, Base):
    """Raised by the service (or a clinician); never deleted, only resolved."""

    __tablename__ = "safety_alerts"
    __table_args__ = (
        client_fk(),
        ref_fk("measurement_id", "measurements"),
        Index("ix_safety_alerts_org_id_client_id_status", "org_id", "client_id", "status"),
        Index(
            "uq_safety_alerts_org_id_measurement_id", "org_id", "measurement_id",
            unique=True, postgresql_where=text("measurement_id IS NOT NULL"),
        ),
        enum_check("status", AlertStatus),
    )

    reason: Mapped[str] = mapped_column(Text)
    measurement_id: Mapped[UUID | None]
    status: Mapped[str] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(Text)
