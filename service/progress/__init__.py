"""Progress for dashboards and notes: per-goal trends and reliable change, the caseload summary, a
strengths-based clinical summary and an embeddable SVG chart (CONTRACT.md section 4, issue 11).

Definitions (all computed in PostgreSQL, see ``sql.py``):
- A goal's markers: markers whose ``goal_id`` is the goal, plus the goal's ``target.marker_id``.
- baseline: the first measurement on or after the goal's ``start_date`` (UTC), else the last before it;
  with no start date, the first measurement. latest: the last. change = latest - baseline.
- improvement: change signed by the marker's direction (positive is better); ``improved`` = improvement > 0.
- slope_per_week: least-squares slope of value over time (``regr_slope`` over the epoch) from the baseline on.
- Instruments: Jacobson-Truax RCI = change / S_diff, S_diff = SD * sqrt(2) * sqrt(1 - r) with the SD and r
  of the instrument registry; reliable when |RCI| > 1.96. ``clinically_significant``: from at or above the
  caseness cut-off to below it (for lower-is-better instruments). Labels: ``recovered`` (reliable
  improvement and clinically significant), ``reliably_improved``, ``no_reliable_change``,
  ``reliably_deteriorated``.
- off_track: the goal is active, at least one marker has a measurement at least ``off_track_days`` old
  (default 28, setting ``PROGRESS_OFF_TRACK_DAYS`` or ``?off_track_days=``), and no marker improved between
  its last value at or before the window's start (else its first value inside it) and its latest value.
- safety_priority: the client has an open safety alert; it is the first key of the response.
- Caseload: ``by_label`` and ``by_trend`` count goal-linked markers (a marker linked to two goals counts
  twice, since its baseline depends on the goal); ``stale_markers`` counts every live marker of the
  caseload with no measurement within ``stale_days`` (default 14); ``milestones_completed`` counts done
  milestones whose ``completed_at`` is within [since, until] (default the last 30 days).
"""
