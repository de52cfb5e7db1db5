"""Typed settings, read from the environment (or `.env`) once and passed into the app factory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
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
    server: Literal["uvicorn", "granian"] = Field(
        default="uvicorn", description="HTTP server of `serve` (deploy/README.md: measured with the bench)")
    public_url: str | None = Field(default=None, description="External base URL, used as the token issuer")

    token_ttl_seconds: int = 900
    token_audience: str | None = None
    signing_alg: str = "ES256"
    signing_key_encryption_key: SecretStr | None = Field(
        default=None, description="Fernet key(s), comma-separated, newest first: the token signing keys' private "
        "halves are stored encrypted with them (the database never sees them). docs/signing-keys.md")
    signing_key_encryption_key_file: Path | None = Field(
        default=None, description="A file holding those keys, one a line, newest first (instead of the variable). "
        "Unset with the embedded database: <data_dir>/signing-key-encryption.key, generated on first start")
    external_issuers: list[ExternalIssuer] = Field(
        default_factory=list, description="JSON list of {issuer, jwks_url | jwks_file, audience, org_claim, ...}"
    )

    db_pool_size: int = Field(default=20, description="Kept connections per worker: at least the expected "
                              "concurrency, so a busy worker does not open and close overflow connections")
    db_max_overflow: int = 10
    db_pinned_pool_size: int = Field(
        default=10, description="Connections per worker kept for reads in one statement (a record by id with its "
        "?include=, a GraphQL query of one root field): their session keeps the tenant of the last read. 0: off "
        "(such reads open a transaction); "
        "off behind PgBouncer in transaction mode (DB_STATEMENT_CACHE_SIZE set)")
    db_coalesced_in_flight: int = Field(
        default=1, ge=1, description="Statements of reads by id (GET /v1/<collection>/<id>) of one tenant and "
        "shape under way at once per worker on the pinned connections; the reads of that tenant and shape asked for "
        "meanwhile wait and go in one statement (up to 50), which also writes and commits their audit rows")
    statement_timeout_ms: int = 15000
    database_read_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://... of a read replica (same non-owner role); used by bulk export. "
        "Unset: everything uses DATABASE_URL",
    )
    revocation_cache: bool = Field(
        default=True, description="Remember tokens found not revoked, forgotten whenever the database announces a "
        "revocation (LISTEN/NOTIFY); off, or with DB_STATEMENT_CACHE_SIZE set (PgBouncer), every request asks")
    db_statement_cache_size: int | None = Field(
        default=None,
        description="asyncpg prepared-statement cache size; 0 behind PgBouncer in transaction mode (also gives "
        "prepared statements unique names). Unset: the driver's default",
    )

    migrate_on_start: bool = Field(
        default=True, description="`serve` applies the migrations first; false where a one-shot job runs them"
    )

    metrics_enabled: bool = Field(default=True, description="Serve Prometheus metrics at /metrics (no token)")
    metrics_port: int | None = Field(
        default=None, description="Serve /metrics on this port (on HOST) instead of the API port; one worker only"
    )

    graphql_compiled_responses: bool = Field(
        default=True, description="Answer a GraphQL query whose every field is compiled to SQL, and that holds no "
        "error, with the JSON PostgreSQL builds, without the executor's walk (docs/graphql.md); false: always the "
        "stock executor over the same statements")

    webhooks_allow_private_targets: bool = Field(
        default=False, description="Allow http:// and loopback/private webhook targets (development and tests only)"
    )
    jwks_allow_private_targets: bool = Field(
        default=False, description="Allow http:// and loopback/private JWKS URLs (apps' --jwks-url, external "
        "issuers' jwks_url): development and tests only")
    webhooks_dispatcher: bool = Field(default=True, description="Run the webhook dispatcher inside `serve`")
    webhooks_poll_seconds: float = 1.0
    webhooks_timeout_seconds: float = 10.0
    webhooks_retry_base_seconds: float = Field(default=5.0, description="First retry delay (before jitter)")
    webhooks_retry_max_delay_seconds: float = 6 * 3600
    webhooks_retry_window_seconds: float = Field(
        default=3 * 24 * 3600, description="Retry this long, then give up and disable the subscription"
    )
    webhooks_lease_seconds: int = 60

    bulk_export_runner: bool = Field(default=True, description="Run the FHIR Bulk Data export runner inside `serve`")
    bulk_export_retention_hours: float = Field(
        default=24, description="A finished export's NDJSON files can be downloaded this long, then are deleted")
    bulk_export_max_active_jobs: int = Field(
        default=5, description="Exports an organization may have queued or running at once; more are a 429")
    bulk_export_page_size: int = Field(default=1000, description="Records read (and written to a file) per step")
    bulk_export_file_max_lines: int = Field(default=100_000, description="Lines per NDJSON file before the next part")
    bulk_export_lease_seconds: int = Field(
        default=60, description="A running export's lease: a worker that stops renewing it (it died) loses the "
        "job to another worker after this long")
    bulk_export_poll_seconds: float = 1.0
    bulk_export_retry_after_seconds: int = Field(default=2, description="Retry-After of a running export's status")
    worker_health_port: int | None = Field(
        default=None, description="`strengths-api worker` serves /healthz and /readyz (its loops' heartbeats) on "
        "this port (on HOST); unset: no health server")
    worker_stuck_seconds: float = Field(
        default=120, description="A worker loop that has not completed an iteration this long is stuck (/healthz 503)")

    max_body_bytes: int = 1_000_000
    max_batch_body_bytes: int = Field(default=16_000_000, description="POST /v1/measurements/batch (1,000 items)")
    max_bulk_body_bytes: int = Field(default=2_000_000_000, description="POST /v1/bulk/import (streamed NDJSON)")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed browser origins; empty: CORS off")
    rate_limit_requests: int = Field(default=6000, description="Per app per window, per instance; 0: off")
    rate_limit_window_seconds: int = 60
    token_rate_limit_requests: int = Field(
        default=600, description="Successful calls of /oauth/token, /oauth/introspect and /oauth/revoke per "
        "authenticated app per RATE_LIMIT_WINDOW_SECONDS (counted after its credentials are checked); 0: off")
    token_failure_limit: int = Field(
        default=100, description="Failed authentications (wrong secret or assertion, unknown link code, "
        "authorization code or refresh token) per source address per RATE_LIMIT_WINDOW_SECONDS; then that "
        "address is refused (429) until its bucket refills; 0: off")
    token_failure_limit_per_client: int = Field(
        default=20, description="The same, per client id among one source address's attempts; 0: off")
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP collector base URL (spans go to <url>/v1/traces); unset: no tracing, "
        "and OpenTelemetry is not even imported")
    otel_service_name: str = "strengths-api"
    rate_limit_storage_url: str | None = Field(
        default=None, description="redis://host:port/db: one quota shared by every instance; unset: per instance")
    log_level: str = "INFO"
    access_log_sample: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of successful requests (status < 400) given an access line; "
        "every refused or failed request has its line whatever this says")
    access_log_flush_seconds: float = Field(
        default=0.5, ge=0.0, le=10.0, description="Access lines of successful requests are written in batches at "
        "most this old (0: each at once); an error's line is written at once, with the batch before it")
    log_sql: bool = False

    link_code_ttl_hours: int = Field(default=72, ge=1, le=72, description="App links expire after this long")
    refresh_family_days: int = Field(default=90, ge=1, le=90,
                                     description="A refresh-token family (one app link redemption) lives this long")

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def audience(self) -> str:
        return self.token_audience or self.base_url
