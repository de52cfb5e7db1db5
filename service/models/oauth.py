"""OAuth bookkeeping: client-assertion jti already used (RFC 7523 replay check) and revoked access tokens."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import DateTime, ForeignKey, Index, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class UsedAssertion(Base):
    """A private_key_jwt assertion's jti, kept until the assertion expires; the primary key is the replay check."""

    __tablename__ = "used_assertions"
    __table_args__ = (Index("ix_used_assertions_expires_at", "expires_at"),)

    org_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id"))
    client_id: Mapped[str] = mapped_column(Text, primary_key=True)
    jti: Mapped[str] = mapped_column(Text, primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RevokedToken(Base):
    """An access token revoked before it expired (RFC 7009); looked up by jti on every request."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(Text, primary_key=True)
    org_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id"))
    client_id: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
