"""What the progress routes answer (also what GraphQL exposes: plain pydantic models). The definitions behind
each number are in docs/progress.md and ``sql.py``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from service.collections.types import Out

Label = Literal["recovered", "reliably_improved", "no_reliable_change", "reliably_deteriorated", "insufficient_data"]
RecoveryStatus = Literal["insufficient_data", "not_a_case", "reliably_deteriorated", "recovered", "reliably_improved",
                         "no_reliable_change"]
Band = Literal["minimal", "mild", "moderate", "moderately_severe", "severe"]


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
    completion_criteria: str


class MarkerProgress(Out):
    marker_id: UUID
    name: str
    unit: str | None
    kind: str
    instrument: str | None
    direction: str
    min_change: float | None = Field(description="The minimal meaningful change off_track uses: the reliable-change "
                                                 "threshold for instruments, else the marker's min_change, else a "
                                                 "tenth of its range")
    measurement_count: int
    baseline: float | None = Field(description="Goals: the first measurement on or after the goal's start date, "
                                               "else the last before it; client measures: the first measurement")
    baseline_at: datetime | None
    baseline_band: Band | None = Field(description="Instruments: the severity band of the baseline")
    latest: float | None
    latest_band: Band | None = Field(description="Instruments: the severity band of the latest measurement")
    last_measured: datetime | None
    stale: bool = Field(description="No measurement in the last 4 weeks (counted from now)")
    change: float | None = Field(description="latest - baseline")
    improvement: float | None = Field(description="Direction-aware change: positive is better")
    improved: bool | None
    slope_per_week: float | None = Field(description="Least-squares slope of the value per week since baseline")
    recent_improvement: float | None = Field(description="Direction-aware change since the reading 4 weeks earlier "
                                                         "(the last on or before that day, else the first after it)")
    label: Label | None = Field(description="Instruments: the reliable-change verdict (whole-score thresholds); "
                                            "insufficient_data with fewer than two measurements from baseline")
    reliable_change_threshold: float | None = Field(description="Instruments: the points of change that are "
                                                                "reliable (PHQ-9 6, GAD-7 4: NHS Talking Therapies)")
    reliable_change: bool | None = Field(description="|change| >= reliable_change_threshold")
    rci: float | None = Field(description="Jacobson-Truax reliable change index, for information (the label follows "
                                          "the whole-score threshold); null with fewer than two measurements")
    s_diff: float | None = Field(description="Standard error of the difference, SD*sqrt(2)*sqrt(1-r)")
    caseness: float | None = Field(description="The instrument's caseness cut-off (at or above: a case)")
    clinically_significant: bool | None = Field(description="Moved from at or above caseness to below it")


class GoalProgress(Out):
    goal_id: UUID
    description: str
    lifecycle: str
    achievement: str
    start_date: date | None
    target_date: date | None
    target: dict[str, Any] | None
    barriers: list[str]
    target_met: bool | None = Field(description="The target evaluated over its period and duration (see "
                                                "docs/progress.md); null when the goal has none")
    stale: bool = Field(description="No measurement of the goal's markers in the last 4 weeks")
    off_track: bool = Field(description="Active, target not met or none, measured in the last 4 weeks, and not "
                                        "better than 4 weeks earlier by the minimal meaningful change")
    last_measured: datetime | None
    milestones_done: int
    milestones_total: int
    next_milestone: NextMilestone | None
    strengths: list[StrengthRef]
    markers: list[MarkerProgress]


class OpenAlert(Out):
    """An alert not yet resolved, with what never changes about it (service.domain.safety)."""

    id: UUID
    reason: str
    status: str
    severity: str = Field(description="urgent (PHQ-9 item 9 at 2 or more) or high")
    trigger: dict[str, Any] | None = Field(description="What opened it ({kind, instrument, item9, total, band}); "
                                                       "null when a clinician raised it by hand")
    observed_at: datetime = Field(description="When the measurement that opened it was observed")
    opened_at: datetime
    acknowledged_at: datetime | None = None


class Recovery(Out):
    status: RecoveryStatus = Field(description="insufficient_data unless PHQ-9 and GAD-7 both have two readings; "
                                               "then not_a_case, reliably_deteriorated, recovered, reliably_improved, "
                                               "no_reliable_change, in that order")
    phq9: Label | None = Field(description="The client's PHQ-9 label (baseline: the first measurement)")
    gad7: Label | None = Field(description="The client's GAD-7 label (baseline: the first measurement)")


class ClientProgress(Out):
    safety_priority: bool = Field(description="The client has an open or acknowledged safety alert: review it first")
    open_safety_alerts: int = Field(description="Safety alerts not yet resolved (open or acknowledged)")
    safety_alerts: list[OpenAlert] = Field(description="The alerts not yet resolved, urgent first, then oldest first")
    client_id: UUID
    recovery: Recovery
    goals: list[GoalProgress]
    client_measures: list[MarkerProgress] = Field(description="The client's instruments that no goal names "
                                                              "(baseline: the first measurement)")


class LabelCounts(Out):
    recovered: int
    reliably_improved: int
    no_reliable_change: int
    reliably_deteriorated: int


class RecoveryCounts(Out):
    insufficient_data: int
    not_a_case: int
    reliably_deteriorated: int
    recovered: int
    reliably_improved: int
    no_reliable_change: int


class TrendCounts(Out):
    improving: int
    worsening: int
    unchanged: int
    insufficient_data: int = Field(description="One measurement from baseline: no trend yet")
    not_measured: int


class OffTrackGoal(Out):
    goal_id: UUID
    client_id: UUID
    safety_priority: bool


class Reading(Out):
    value: float
    band: Band | None
    label: Label | None


class CaseloadRow(Out):
    client_id: UUID
    safety_priority: bool
    phq9: Reading | None = Field(description="The latest PHQ-9: value, band, label (baseline: the first PHQ-9)")
    gad7: Reading | None = Field(description="The latest GAD-7: value, band, label (baseline: the first GAD-7)")
    last_measured: datetime | None = Field(description="The latest measurement of any of the client's markers")
    stale: bool = Field(description="Last measured over 4 weeks ago, or never")
    off_track_goals: int
    next_milestone_due: date | None = Field(description="The earliest due date of a planned or in-progress "
                                                        "milestone of an active goal (overdue ones included)")
    recovery: RecoveryStatus


class CaseloadSummary(Out):
    safety_priority_clients: list[UUID] = Field(description="Clients with an open or acknowledged safety alert, "
                                                            "first")
    open_safety_alerts: int = Field(description="Safety alerts not yet resolved (open or acknowledged)")
    client_count: int
    by_label: LabelCounts = Field(description="Clients' PHQ-9 and GAD-7 measures by label (insufficient_data not "
                                              "counted)")
    by_recovery: RecoveryCounts = Field(description="Clients by client-level recovery status")
    by_trend: TrendCounts = Field(description="Goal markers and client measures by direction-aware change since "
                                              "baseline")
    off_track_count: int
    off_track_goals: list[OffTrackGoal]
    stale_markers: int = Field(description="Markers with no measurement in the last 4 weeks")
    milestones_completed: int
    period_since: datetime
    period_until: datetime
    clients: list[CaseloadRow] = Field(description="One row per client, sorted and filtered as asked (a page)")
    next_cursor: str | None


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
