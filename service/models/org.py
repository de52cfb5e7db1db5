"""Organizations (tenants), apps (OAuth clients) and the token signing keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class App(Base):
    """An OAuth client. Called an *app* so it is never confused with a therapy client."""

    __tablename__ = "apps"
    __table_args__ = (Index("uq_apps_client_id", "client_id", unique=True),)

    org_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    secret_hash: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    patient_id: Mapped[UUID | None]
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    jwks_url: Mapped[str | None] = mapped_column(Text)
    # A public app (a patient's own app, RFC 6749 section 2.1): no secret, PKCE, exact redirect URIs.
    public: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    redirect_uris: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SigningKey(Base):
    """Keys that sign access tokens; retired keys keep verifying until their tokens expire.

    ``encrypted_jwk`` is the private JWK encrypted with SIGNING_KEY_ENCRYPTION_KEY (Fernet), a key the
    database never sees; the public half is derived from it, so a row that SQL alone could write (without
    that key) is never trusted, not even to verify.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(Text, primary_key=True)
    alg: Mapped[str] = mapped_column(Text)
    encrypted_jwk: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(server_default=text("true"))
