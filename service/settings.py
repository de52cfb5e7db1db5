"""Typed settings, read from the environment (or `.env`) once and passed into the app factory."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ExternalIssuer(BaseModel):
    """An operator-trusted authorization server whose JWTs this service accepts (resource-server mode)."""

    issuer: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    audience: str
    org_claim: str = "org_id"
    patient_claim: str | None = "patient"
    scope_claim: str = "scope"
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "RS384", "ES256", "ES384"])


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://... ; unset means an embedded PostgreSQL under data_dir",
    )
    migration_database_url: str | None = Field(
        default=None, description="Owner role used for migrations; DATABASE_URL is then a non-owner role"
    )
    data_dir: Path = PROJECT_ROOT / ".data"
    app_role: str = "strengths_app"

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(default=None, description="External base URL, used as the token issuer")

    token_ttl_seconds: int = 900
    token_audience: str | None = None
    signing_alg: str = "ES256"
    external_issuers: list[ExternalIssuer] = Field(
        default_factory=list, description="JSON list of {issuer, jwks_url | jwks_file, audience, org_claim, ...}"
    )

    db_pool_size: int = 10
    db_max_overflow: int = 10
    statement_timeout_ms: int = 15000

    progress_off_track_days: int = Field(default=28, description="A goal is off track with no improvement this long")
    progress_stale_days: int = Field(default=14, description="A marker is stale when not measured this long")

    max_body_bytes: int = 1_000_000
    max_batch_body_bytes: int = Field(default=16_000_000, description="POST /v1/measurements/batch (1,000 items)")
    max_bulk_body_bytes: int = Field(default=2_000_000_000, description="POST /v1/bulk/import (streamed NDJSON)")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed browser origins; empty: CORS off")
    rate_limit_requests: int = Field(default=6000, description="Per app per window, per instance; 0: off")
    rate_limit_window_seconds: int = 60
    log_level: str = "INFO"
    log_sql: bool = False

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def audience(self) -> str:
        return self.token_audience or self.base_url
