"""Strengths and what surrounds them: protective factors, exceptions, the strengths log, experiments."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from service.collections.registry import Collection, Ref, RuleContext, register
from service.collections.schemas import schemas
from service.collections.types import (
    Day,
    ExternalIds,
    Flag,
    Rating,
    RequiredText,
    ShortText,
    Strict,
    Text,
    Timestamp,
    UUIDs,
)
from service.domain.enums import (
    ExceptionCondition,
    ExperimentStatus,
    ProtectiveCategory,
    ProtectiveStatus,
    StrengthDomain,
    StrengthKind,
    StrengthSource,
    StrengthStatus,
)
from service.errors import RuleViolation
from service.models import Exception_, Experiment, ProtectiveFactor, Strength, StrengthUse


class StrengthIn(Strict):
    client_id: UUID
    domain: StrengthDomain
    kind: StrengthKind
    label: ShortText = Field(description="Short name, e.g. 'help-seeking'")
    client_label: Text | None = Field(default=None, description="The client's own words for it")
    description: Text | None = Field(
        default=None, description="Behavioural: what the client does, e.g. 'asks a friend for help and follows through'"
    )
    context: Text | None = Field(default=None, description="Where it shows up")
    under_stress: Flag | None = Field(default=None, description="Shows up when things get hard")
    source: StrengthSource = StrengthSource.client_report
    status: StrengthStatus = StrengthStatus.hypothesis
    evidence: list[Text] = Field(default_factory=list, max_length=50, description="Lived examples")
    external_ids: ExternalIds = Field(default_factory=list)


class ProtectiveFactorIn(Strict):
    client_id: UUID
    category: ProtectiveCategory
    description: RequiredText
    status: ProtectiveStatus = ProtectiveStatus.present
    external_ids: ExternalIds = Field(default_factory=list)


class ExceptionIn(Strict):
    """When the problem is a little smaller."""

    client_id: UUID
    problem: RequiredText
    description: RequiredText = Field(description="What is different when the problem is smaller")
    conditions: list[ExceptionCondition] = Field(default_factory=list, max_length=5)
    strength_ids: UUIDs = Field(default_factory=list)
    observed_at: Timestamp | None = None
    external_ids: ExternalIds = Field(default_factory=list)


class StrengthUseIn(Strict):
    client_id: UUID
    strength_id: UUID
    situation: RequiredText
    result: Text | None = None
    rating: Rating | None = Field(default=None, description="How well it went, 0-10")
    occurred_at: Timestamp
    external_ids: ExternalIds = Field(default_factory=list)


class ExperimentIn(Strict):
    client_id: UUID
    strength_id: UUID
    goal_id: UUID | None = None
    plan: RequiredText = Field(description="What the client will try, where and when")
    status: ExperimentStatus = ExperimentStatus.planned
    due_date: Day | None = None
    confidence_before: Rating | None = None
    confidence_after: Rating | None = None
    result: Text | None = None
    debrief: Text | None = Field(default=None, description="What was learned, in the client's words")
    external_ids: ExternalIds = Field(default_factory=list)


async def experiment_done_needs_result(ctx: RuleContext) -> None:
    if ctx.data.get("status") == ExperimentStatus.done and not (ctx.data.get("result") or "").strip():
        raise RuleViolation("result", "An experiment marked done needs its result", "experiment_done_without_result")


s_create, s_patch, s_out = schemas(StrengthIn)
strengths = register(Collection(
    name="strengths", type_name="strength", resource="Strength", title="Strengths", table=Strength.__table__,
    create=s_create, patch=s_patch, out=s_out, children={"strength-uses": "strength_id", "experiments": "strength_id"},
    description="What the client can already do or draw on.",
))

p_create, p_patch, p_out = schemas(ProtectiveFactorIn)
protective_factors = register(Collection(
    name="protective-factors", type_name="protective_factor", resource="ProtectiveFactor",
    title="Protective factors", table=ProtectiveFactor.__table__, create=p_create, patch=p_patch, out=p_out,
    description="Resources around the client.",
))

e_create, e_patch, e_out = schemas(ExceptionIn)
exceptions = register(Collection(
    name="exceptions", type_name="exception", resource="Exception", title="Exceptions", table=Exception_.__table__,
    create=e_create, patch=e_patch, out=e_out, refs=[Ref("strength_ids", "strengths", many=True)],
    description="When the problem is a little smaller.",
))

u_create, u_patch, u_out = schemas(StrengthUseIn)
strength_uses = register(Collection(
    name="strength-uses", type_name="strength_use", resource="StrengthUse", title="Strength uses",
    table=StrengthUse.__table__, create=u_create, patch=u_patch, out=u_out,
    refs=[Ref("strength_id", "strengths")], filters=["strength_id"],
    description="The strengths log: situation, strength used, result.",
))

x_create, x_patch, x_out = schemas(ExperimentIn)
experiments = register(Collection(
    name="experiments", type_name="experiment", resource="Experiment", title="Experiments",
    table=Experiment.__table__, create=x_create, patch=x_patch, out=x_out,
    refs=[Ref("strength_id", "strengths"), Ref("goal_id", "goals")], rules=[experiment_done_needs_result],
    filters=["strength_id", "goal_id"],
    description="Between-session experiments: use one strength on purpose, then debrief.",
))
