"""The audit trail: what was read or written (service) and the audit events API (rest)."""
