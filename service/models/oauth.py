"""OAuth bookkeeping: client-assertion jti already used (RFC 7523 replay check), revoked access tokens, and
patient app linking (links, grants, authorization codes, refresh tokens)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import DateTime, ForeignKey, Index, LargeBinary, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, client_fk, ref_fk


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


class AppLink(Base):
    """A one-time link between a client and a public app, created by a clinician (CONTRACT.md section 2).

    Only the SHA-256 of the link code is kept; the code itself is shown once, in the 201 that creates it.
    """

    __tablename__ = "app_links"
    __table_args__ = (
        client_fk(),
        Index("uq_app_links_code_hash", "code_hash", unique=True),
        Index("ix_app_links_org_id_client_id", "org_id", "client_id"),
    )

    org_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    client_id: Mapped[UUID]
    app_id: Mapped[str] = mapped_column(Text)  # the public app's client_id
    code_hash: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AppGrant(Base):
    """One redemption of an app link: the authorization its access tokens (claim ``grant_id``) and its
    refresh-token family hang on. Revoking it, or its link, refuses all of them at once."""

    __tablename__ = "app_grants"
    # ``token_revoked()`` finds a grant by id alone (an access token names no organization it could trust
    # before the tenant is set), hence the index on ``id``.
    __table_args__ = (client_fk(), ref_fk("link_id", "app_links"), Index("uq_app_grants_id", "id", unique=True))

    org_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    link_id: Mapped[UUID]
    client_id: Mapped[UUID]
    app_id: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class AuthorizationCode(Base):
    """An authorization code (RFC 6749 section 4.1) with its PKCE challenge: single-use, short-lived, hashed."""

    __tablename__ = "authorization_codes"
    __table_args__ = (
        ref_fk("link_id", "app_links"),
        ref_fk("grant_id", "app_grants"),
        Index("uq_authorization_codes_code_hash", "code_hash", unique=True),
        Index("ix_authorization_codes_expires_at", "expires_at"),
    )

    org_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    code_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    link_id: Mapped[UUID]
    redirect_uri: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    grant_id: Mapped[UUID | None]  # the grant it was exchanged for (revoked if the code is presented again)


class RefreshToken(Base):
    """One refresh token of a grant's family, hashed. Rotated on use; ``successor`` holds the pair its rotation
    returned, encrypted with a key derived from this token itself, for the short retry grace."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        ref_fk("grant_id", "app_grants"),
        Index("uq_refresh_tokens_token_hash", "token_hash", unique=True),
        Index("ix_refresh_tokens_org_id_grant_id", "org_id", "grant_id"),
    )

    org_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    grant_id: Mapped[UUID]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    successor: Mapped[bytes | None] = mapped_column(LargeBinary)
