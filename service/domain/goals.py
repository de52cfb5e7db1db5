"""Behavioural goals, each built on named strengths, and their milestones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from pydantic import Field

from service.collections.registry import Collection, Ref, RuleContext
from service.collections.schemas import schemas
from service.collections.types import (
    Day,
    ExternalIds,
    Finite,
    RequiredText,
    ShortText,
    SmallInt,
    Strict,
    Text,
    Timestamp,
    UUIDs,
)
from service.domain.enums import Comparator, GoalAchievement, GoalLifecycle, MilestoneStatus
from service.errors import RuleViolation
from service.models import Goal, Milestone

# At most four digits per unit (P9999Y at most), so that every accepted duration is a PostgreSQL interval.
IsoDuration = Annotated[str, Field(pattern=r"^P([0-9]{1,4}Y)?([0-9]{1,4}M)?([0-9]{1,4}W)?([0-9]{1,4}D)?$",
                                   min_length=3, max_length=20, description="ISO 8601 duration, e.g. P1W")]


class GoalTarget(Strict):
    """A behavioural target: e.g. marker >= 3 per P1W, held for P4W (progress evaluates it as ``target_met``:
    docs/progress.md)."""

    marker_id: UUID | None = Field(default=None, description="The marker the target is read on (default: the "
                                                              "goal's only marker)")
    comparator: Comparator
    value: Finite
    period: IsoDuration | None = Field(default=None, description="The period each reading of the marker counts "
                                                                 "over (P1W: a weekly count)")
    duration: IsoDuration | None = Field(default=None, description="How long the target must hold: its readings "
                                                                   "meet it without a break for this long")


class GoalIn(Strict):
    client_id: UUID
    description: RequiredText = Field(description="Behavioural: what the client will do, where and how often")
    strength_ids: UUIDs = Field(default_factory=list, description="At least one: the strengths the goal builds on")
    target: GoalTarget | None = None
    lifecycle: GoalLifecycle = GoalLifecycle.proposed
    achievement: GoalAchievement = GoalAchievement.in_progress
    start_date: Day | None = None
    target_date: Day | None = None
    barriers: list[Text] = Field(default_factory=list, max_length=20)
    external_ids: ExternalIds = Field(default_factory=list)


class MilestoneIn(Strict):
    client_id: UUID
    goal_id: UUID
    title: ShortText
    completion_criteria: Text | None = Field(
        default=None, description="Required: what will be observably true when this step is done"
    )
    sequence: SmallInt | None = None
    status: MilestoneStatus = MilestoneStatus.planned
    due_date: Day | None = None
    completed_at: Timestamp | None = None
    external_ids: ExternalIds = Field(default_factory=list)


async def goal_needs_strength(ctx: RuleContext) -> None:
    if not ctx.data.get("strength_ids"):
        raise RuleViolation("strength_ids", "A goal must build on at least one named strength", "goal_without_strength")


async def goal_dates_in_order(ctx: RuleContext) -> None:
    start, end = ctx.data.get("start_date"), ctx.data.get("target_date")
    if start and end and end < start:
        raise RuleViolation("target_date", "The target date is before the start date", "target_before_start")


async def milestone_needs_criteria(ctx: RuleContext) -> None:
    if not (ctx.data.get("completion_criteria") or "").strip():
        raise RuleViolation(
            "completion_criteria", "A milestone needs observable completion criteria", "milestone_without_criteria"
        )


async def milestone_done_has_date(ctx: RuleContext) -> None:
    if ctx.data.get("status") == MilestoneStatus.done and not ctx.data.get("completed_at") and ctx.changed("status"):
        ctx.extra["completed_at"] = datetime.now(UTC)


g_create, g_patch, g_out = schemas(GoalIn)
goals = Collection(
    name="goals", type_name="goal", resource="Goal", title="Goals", table=Goal.__table__,
    create=g_create, patch=g_patch, out=g_out,
    refs=[Ref("strength_ids", "strengths", many=True), Ref("target.marker_id", "outcome-markers")],
    rules=[goal_needs_strength, goal_dates_in_order],
    children={"milestones": "goal_id", "outcome-markers": "goal_id", "experiments": "goal_id"},
    description="Behavioural goals, each built on named strengths.",
)

m_create, m_patch, m_out = schemas(MilestoneIn)
milestones = Collection(
    name="milestones", type_name="milestone", resource="Milestone", title="Milestones", table=Milestone.__table__,
    create=m_create, patch=m_patch, out=m_out, refs=[Ref("goal_id", "goals")],
    rules=[milestone_needs_criteria, milestone_done_has_date], filters=["goal_id"],
    description="Concrete, observable steps toward a goal.",
)
