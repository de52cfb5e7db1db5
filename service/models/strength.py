"""Strengths and what surrounds them: protective factors, exceptions, the strengths log, experiments."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import Boolean, Date, DateTime, Index, SmallInteger, Text, Uuid, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from service.domain.enums import (
    ExperimentStatus,
    ProtectiveCategory,
    ProtectiveStatus,
    StrengthDomain,
    StrengthKind,
    StrengthSource,
    StrengthStatus,
)
from service.models.base import Base, ClientOwnedMixin, client_fk, enum_check, ref_fk


class Strength(ClientOwnedMixin, Base):
    __tablename__ = "strengths"
    __table_args__ = (
        client_fk(),
        Index("ix_strengths_org_id_client_id", "org_id", "client_id"),
        enum_check("domain", StrengthDomain),
        enum_check("kind", StrengthKind),
        enum_check("source", StrengthSource),
        enum_check("status", StrengthStatus),
    )

    domain: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    client_label: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    context: Mapped[str | None] = mapped_column(Text)
    under_stress: Mapped[bool | None] = mapped_column(Boolean)
    suppressed_in: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[str]] = mapped_column(ARRAY(Text))


class ProtectiveFactor(ClientOwnedMixin, Base):
    __tablename__ = "protective_factors"
    __table_args__ = (
        client_fk(),
        Index("ix_protective_factors_org_id_client_id", "org_id", "client_id"),
        enum_check("category", ProtectiveCategory),
        enum_check("status", ProtectiveStatus),
    )

    category: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)


class Exception_(ClientOwnedMixin, Base):
    """When the problem is a little smaller (an 'exception' in solution-focused terms)."""

    __tablename__ = "exceptions"
    __table_args__ = (
        client_fk(),
        Index("ix_exceptions_org_id_client_id", "org_id", "client_id"),
        Index("ix_exceptions_strength_ids", "strength_ids", postgresql_using="gin"),
    )

    problem: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    conditions: Mapped[list[str]] = mapped_column(ARRAY(Text))
    strength_ids: Mapped[list[UUID]] = mapped_column(ARRAY(Uuid))
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StrengthUse(ClientOwnedMixin, Base):
    """The strengths log: situation, strength used, result."""

    __tablename__ = "strength_uses"
    __table_args__ = (
        client_fk(),
        ref_fk("strength_id", "strengths"),
        Index("ix_strength_uses_org_id_client_id", "org_id", "client_id"),
        Index("ix_strength_uses_org_id_strength_id", "org_id", "strength_id"),
    )

    strength_id: Mapped[UUID]
    situation: Mapped[str] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    add_to_evidence: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class Experiment(ClientOwnedMixin, Base):
    """A between-session experiment: use one strength on purpose, then debrief."""

    __tablename__ = "experiments"
    __table_args__ = (
        client_fk(),
        ref_fk("strength_id", "strengths"),
        ref_fk("goal_id", "goals"),
        Index("ix_experiments_org_id_client_id", "org_id", "client_id"),
        enum_check("status", ExperimentStatus),
    )

    strength_id: Mapped[UUID]
    goal_id: Mapped[UUID | None]
    plan: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    due_date: Mapped[date | None] = mapped_column(Date)
    confidence_before: Mapped[int | None] = mapped_column(SmallInteger)
    confidence_after: Mapped[int | None] = mapped_column(SmallInteger)
    result: Mapped[str | None] = mapped_column(Text)
    debrief: Mapped[str | None] = mapped_column(Text)
