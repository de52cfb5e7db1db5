"""Behavioural goals (each built on named strengths) and their milestones."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Date, DateTime, Index, Integer, Text, Uuid
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.domain.enums import GoalAchievement, GoalLifecycle, MilestoneStatus
from service.models.base import Base, ClientOwnedMixin, client_fk, enum_check, ref_fk


class Goal(ClientOwnedMixin, Base):
    __tablename__ = "goals"
    __table_args__ = (
        client_fk(),
        Index("ix_goals_org_id_client_id", "org_id", "client_id"),
        Index("ix_goals_strength_ids", "strength_ids", postgresql_using="gin"),
        enum_check("lifecycle", GoalLifecycle),
        enum_check("achievement", GoalAchievement),
    )

    description: Mapped[str] = mapped_column(Text)
    strength_ids: Mapped[list[UUID]] = mapped_column(ARRAY(Uuid))
    target: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    lifecycle: Mapped[str] = mapped_column(Text)
    achievement: Mapped[str] = mapped_column(Text)
    start_date: Mapped[date | None] = mapped_column(Date)
    target_date: Mapped[date | None] = mapped_column(Date)
    barriers: Mapped[list[str]] = mapped_column(ARRAY(Text))


class Milestone(ClientOwnedMixin, Base):
    __tablename__ = "milestones"
    __table_args__ = (
        client_fk(),
        ref_fk("goal_id", "goals"),
        Index("ix_milestones_org_id_goal_id", "org_id", "goal_id"),
        Index("ix_milestones_org_id_client_id", "org_id", "client_id"),
        enum_check("status", MilestoneStatus),
    )

    goal_id: Mapped[UUID]
    title: Mapped[str] = mapped_column(Text)
    completion_criteria: Mapped[str] = mapped_column(Text)
    sequence: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    due_date: Mapped[date | None] = mapped_column(Date)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
