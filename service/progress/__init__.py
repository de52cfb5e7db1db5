"""Progress for dashboards and notes: per-goal trends and reliable change, the caseload summary, a
strengths-based clinical summary and an embeddable SVG chart (CONTRACT.md section 4, issue 11)."""
