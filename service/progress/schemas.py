"""What the progress routes answer (also what a GraphQL adapter can expose: plain pydantic models)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from service.collections.types import Out

Label = Literal["recovered", "reliably_improved", "no_reliable_change", "reliably_deteriorated"]


class StrengthRef(Out):
    id: UUID
    label: str
    status: str


class NextMilestone(Out):
    id: UUID
    title: str
    due_date: date | None
    sequence: int | None
    status: str


class MarkerProgress(Out):
    marker_id: UUID
    name: str
    unit: str | None
    kind: str
    instrument: str | None
    direction: str
    measurement_count: int
    baseline: float | None = Field(description="First measurement on or after the goal's start date, else the "
                                               "last before it")
    baseline_at: datetime | None
    latest: float | None
    last_measured: datetime | None
    change: float | None = Field(description="latest - baseline")
    improvement: float | None = Field(description="Direction-aware change: positive is better")
    improved: bool | None
    slope_per_week: float | None = Field(description="Least-squares slope of the value per week since baseline")
    recent_improvement: float | None = Field(description="Direction-aware change over the off-track window")
    rci: float | None = Field(description="Jacobson-Truax reliable change index (instruments)")
    s_diff: float | None = Field(description="Standard error of the difference, SD*sqrt(2)*sqrt(1-r)")
    caseness: float | None = Field(description="The instrument's clinical cut-off")
    reliable_change: bool | None = Field(description="|RCI| > 1.96")
    clinically_significant: bool | None = Field(description="Moved from the clinical to the non-clinical range")
    label: Label | None


class GoalProgress(Out):
    goal_id: UUID
    description: str
    lifecycle: str
    achievement: str
    start_date: date | None
    target_date: date | None
    target: dict[str, Any] | None
    off_track: bool = Field(description="Active, measured for the whole window, and no improvement over it")
    milestones_done: int
    milestones_total: int
    next_milestone: NextMilestone | None
    strengths: list[StrengthRef]
    markers: list[MarkerProgress]


class OpenAlert(Out):
    id: UUID
    reason: str
    opened_at: datetime


class ClientProgress(Out):
    safety_priority: bool = Field(description="The client has an open safety alert: review it first")
    open_safety_alerts: int
    safety_alerts: list[OpenAlert] = Field(description="The open alerts, oldest first")
    client_id: UUID
    off_track_days: int
    goals: list[GoalProgress]


class LabelCounts(Out):
    recovered: int
    reliably_improved: int
    no_reliable_change: int
    reliably_deteriorated: int


class TrendCounts(Out):
    improving: int
    worsening: int
    unchanged: int
    not_measured: int


class OffTrackGoal(Out):
    goal_id: UUID
    client_id: UUID
    safety_priority: bool


class CaseloadSummary(Out):
    safety_priority_clients: list[UUID] = Field(description="Clients with an open safety alert, first")
    open_safety_alerts: int
    clients: int
    by_label: LabelCounts = Field(description="Instrument markers linked to goals, by reliable-change label")
    by_trend: TrendCounts = Field(description="Markers linked to goals, by direction-aware change since baseline")
    off_track_count: int
    off_track_goals: list[OffTrackGoal]
    milestones_completed: int
    period_since: datetime
    period_until: datetime
    stale_markers: int = Field(description="Markers with no measurement within stale_days")
    stale_days: int
    off_track_days: int


class QualityHint(Out):
    code: str
    record_type: str
    record_id: UUID
    message: str


class SummarySection(Out):
    title: str
    lines: list[str]


class ClinicalSummary(Out):
    client_id: UUID
    since: date
    safety_priority: bool
    text: str = Field(description="Plain text, ready to paste into an EHR note")
    sections: list[SummarySection]
    quality_hints: list[QualityHint]
