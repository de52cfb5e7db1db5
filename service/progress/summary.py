"""A deterministic, strengths-based clinical summary, ready to paste into an EHR note: Safety (first, when an
alert is unresolved), Assessment (latest symptom scores and bands beside the identified strengths), Goals,
Progress since ``since`` and Plan, with quality hints.

Deterministic: the same data (and the same ``since``, on the same day) gives the same text. Progress is read
strictly inside the window [since, now] (a date: from 00:00 UTC): strength uses by ``occurred_at``, milestones by
``completed_at``, experiments by the time their ``done`` status was recorded (their history: they have no
completion time of their own), measurements by ``observed_at`` (the first and last reading inside the window,
never a baseline from before it). Three statements: the client, the progress statement, the rest of the record.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import service as audit
from service.auth.principal import Principal
from service.domain.safety import alert_line
from service.progress import service as progress
from service.progress.hints import record_hints
from service.progress.record import RECORD
from service.progress.schemas import ClientProgress, ClinicalSummary, OpenAlert, SummarySection
from service.progress.sections import assessment_lines, goal_lines, plan_lines, progress_lines


def safety_lines(alerts: list[OpenAlert]) -> list[str]:
    """The Safety section from the unresolved alerts (urgent first, then oldest), told from what never changes:
    each alert's trigger, severity and observed_at (service.domain.safety.alert_line), never editable text."""
    n = len(alerts)
    return [f"{n} unresolved safety alert{'s' if n != 1 else ''}: review before anything else and update the "
            "safety plan.", *(alert_line(a.model_dump()) for a in alerts)]


async def clinical_summary(
    conn: AsyncConnection, who: Principal, client_id: UUID, *, since: datetime | None = None,
) -> ClinicalSummary:
    """``since``: the window's start (a date given to the API arrives as 00:00 UTC that day)."""
    audit.seen("Progress", client_id, client_id)
    if since is None:
        day = (datetime.now(UTC) - timedelta(days=30)).date()
        since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    client = await progress.check_client(conn, who, client_id)
    prog = await progress.progress_of_live_client(conn, who, client_id)
    row = (await conn.execute(RECORD, {"org": who.org_id, "client": client_id, "since": since})).one()
    record = dict(row._mapping)
    return compose(client_id, client.preferred_future, since, prog, record)


def compose(client_id: UUID, preferred_future: str | None, since: datetime, prog: ClientProgress,
            record: dict[str, Any]) -> ClinicalSummary:
    utc = since.astimezone(UTC)
    # The window's start as the text names it: the day when it starts at 00:00 UTC, else the timestamp as given.
    shown = utc.date() if utc.time() == time(0) else since
    sections = []
    if prog.safety_priority:
        sections.append(SummarySection(title="Safety", lines=safety_lines(prog.safety_alerts)))
    sections += [
        SummarySection(title="Assessment", lines=assessment_lines(preferred_future, prog, record)),
        SummarySection(title="Goals", lines=goal_lines(prog, record)),
        SummarySection(title=f"Progress since {shown.isoformat()}", lines=progress_lines(shown, record)),
        SummarySection(title="Plan", lines=plan_lines(prog, record)),
    ]
    body = "\n\n".join(s.title + "\n" + "\n".join(f"- {line}" for line in s.lines) for s in sections)
    return ClinicalSummary(
        client_id=client_id, since=utc.date(), safety_priority=prog.safety_priority,
        text=f"Strengths-based summary (progress since {shown.isoformat()})\n\n{body}\n", sections=sections,
        quality_hints=record_hints(client_id, record, prog.goals),
    )
