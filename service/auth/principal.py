"""Who is calling: one app of one organization, with its granted scopes (and patient, if bound)."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from service.auth.scopes import Context, Scope, scope_allows


@dataclass(frozen=True, slots=True)
class Principal:
    org_id: UUID
    app_id: str  # the OAuth client_id (or the external issuer's subject)
    subject: str
    scopes: list[Scope] = field(default_factory=list)
    patient_id: UUID | None = None
    token_id: str | None = None
    expires_at: int = 0
    issuer: str | None = None
    grant_id: str | None = None  # the app-link grant a patient app's token came through (revocable as a family)

    def allows(self, resource: str, perm: str) -> bool:
        """Patient-context scopes count only for patient-bound tokens, whose rows are then limited."""
        usable = self.scopes if self.patient_id else [s for s in self.scopes if s.context != "patient"]
        return scope_allows(usable, resource, perm)

    @property
    def context(self) -> Context:
        return "patient" if self.patient_id else "system"

    @property
    def who(self) -> str:
        return self.app_id if self.subject == self.app_id else f"{self.app_id}:{self.subject}"
