"""Strengths and what surrounds them: protective factors, exceptions, the strengths log, experiments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from pydantic import Field
from sqlalchemy import ColumnElement, FromClause, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.auth.scopes import required_scope
from service.collections import service
from service.collections.registry import Collection, Ref, RuleContext, Written, register
from service.collections.repository import readable
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
from service.errors import Forbidden, Gone, RuleViolation
from service.models import Exception_, Experiment, ProtectiveFactor, Strength, StrengthUse

MAX_EVIDENCE = 50
MAX_TEXT = 10_000  # as types.Text


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
    suppressed_in: Text | None = Field(default=None, description="Where it gets held back")
    source: StrengthSource = StrengthSource.client_report
    status: StrengthStatus = Field(
        default=StrengthStatus.hypothesis,
        description="confirmed only with a lived example: an evidence entry or a logged strength use")
    evidence: list[Text] = Field(default_factory=list, max_length=MAX_EVIDENCE, description="Lived examples")
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
    add_to_evidence: Flag = Field(
        default=False, description="Also append this use to its strength's evidence as a lived example "
        "('<occurred_at date>: <situation> Result: <result>'), in the same transaction, once, when it becomes "
        "true; needs the Strength.u scope")
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


async def _has_uses(conn: AsyncConnection, who: Principal, strength_id: Any) -> bool:
    uses = StrengthUse.__table__
    logged = readable(uses, who).where(uses.c.strength_id == strength_id, uses.c.deleted_at.is_(None))
    return bool((await conn.execute(select(exists(logged)))).scalar())


async def confirmed_needs_lived_example(ctx: RuleContext) -> None:
    """CONTRACT.md section 3: a strength becomes ``confirmed`` only with a lived example (a non-blank evidence
    entry or a logged strength use); an assessment result stays a hypothesis until then."""
    if ctx.data.get("status") != StrengthStatus.confirmed or not (ctx.changed("status") or ctx.changed("evidence")):
        return
    if any(e.strip() for e in ctx.data.get("evidence") or []):
        return
    if ctx.current is not None and await _has_uses(ctx.conn, ctx.who, ctx.current["id"]):
        return
    raise RuleViolation("status", "A strength is confirmed only with a lived example: an evidence entry or a "
                        "logged strength use", "confirmed_without_evidence")


def uses_count(table: FromClause) -> ColumnElement[int]:
    """The live strength uses logged for a strength."""
    uses = StrengthUse.__table__
    return (select(func.count()).where(uses.c.org_id == table.c.org_id, uses.c.strength_id == table.c.id,
                                       uses.c.deleted_at.is_(None))
            .correlate(table).scalar_subquery())


def lived_example(use: dict[str, Any]) -> str:
    """A strength use as an evidence entry."""
    text = f"{use['occurred_at'].date().isoformat()}: {use['situation'].strip()}"
    if (use.get("result") or "").strip():
        text += f" Result: {use['result'].strip()}"
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


async def use_as_evidence(conn: AsyncConnection, who: Principal, writes: Sequence[Written]) -> None:
    """A use written with ``add_to_evidence`` (or changed to it) appends itself to its strength's evidence: an
    update of the strength (version, history, ``strength.updated``) in the use's transaction."""
    for w in writes:
        if not w.record.get("add_to_evidence") or (w.before is not None and w.before.get("add_to_evidence")):
            continue
        if not who.allows(strengths.resource, "u"):  # it changes the strength: its own scope is needed
            raise Forbidden(required_scope(strengths.resource, "u", who.context))
        try:
            row = await service.fetch(conn, who, strengths, w.record["strength_id"], for_update=True)
        except Gone:
            raise RuleViolation("add_to_evidence", "The strength was deleted", "reference_not_found") from None
        evidence = [*row.evidence, lived_example(w.record)]
        if len(evidence) > MAX_EVIDENCE:
            raise RuleViolation("add_to_evidence", f"The strength already holds {MAX_EVIDENCE} lived examples; "
                                "edit its evidence instead", "evidence_full")
        await service.apply_update(conn, who, strengths, row, {"evidence": evidence})


async def experiment_done_needs_result(ctx: RuleContext) -> None:
    if ctx.data.get("status") == ExperimentStatus.done and not (ctx.data.get("result") or "").strip():
        raise RuleViolation("result", "An experiment marked done needs its result", "experiment_done_without_result")


s_create, s_patch, s_out = schemas(StrengthIn, extra_out={
    "uses_count": (int, Field(description="Strength uses logged (read-only)")),
})
strengths = register(Collection(
    name="strengths", type_name="strength", resource="Strength", title="Strengths", table=Strength.__table__,
    create=s_create, patch=s_patch, out=s_out, children={"strength-uses": "strength_id", "experiments": "strength_id"},
    rules=[confirmed_needs_lived_example], computed={"uses_count": uses_count},
    description="What the client can already do or draw on; confirmed only by a lived example.",
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
    refs=[Ref("strength_id", "strengths")], filters=["strength_id"], after_write=use_as_evidence,
    description="The strengths log: situation, strength used, result; a use may become its strength's evidence.",
))

x_create, x_patch, x_out = schemas(ExperimentIn)
experiments = register(Collection(
    name="experiments", type_name="experiment", resource="Experiment", title="Experiments",
    table=Experiment.__table__, create=x_create, patch=x_patch, out=x_out,
    refs=[Ref("strength_id", "strengths"), Ref("goal_id", "goals")], rules=[experiment_done_needs_result],
    filters=["strength_id", "goal_id"],
    description="Between-session experiments: use one strength on purpose, then debrief.",
))
