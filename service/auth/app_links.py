"""App links: a clinician links one client to a patient's own (public) app with a one-time code.

Use cases, transport-free (``service.auth.app_links_rest`` is the REST adapter). A link code is shown
once, in the reply that creates the link; only its SHA-256 is stored, it is never logged (the access
log names no body, the audit rows name ids only). It is single-use, bound to one app and one client,
and expires after LINK_CODE_TTL_HOURS (72 at most). Redeeming it is ``/oauth/authorize``
(``service.auth.authorize_rest``); revoking a link refuses at once every token issued through it
(``token_revoked()`` joins a token's grant to its link).
"""

from __future__ import annotations

import random
import secrets
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import service as audit
from service.auth.apps import hash_secret
from service.auth.principal import Principal
from service.auth.revocations import revoking
from service.auth.scopes import required_scope
from service.collections import service
from service.collections.registry import owner
from service.collections.types import Out, ShortText, uuid7
from service.collections.types import Strict as StrictBody
from service.errors import Forbidden, NotFound, RuleViolation

# 32 symbols (5 bits each) without 0/O and 1/I, so a code read aloud or typed from a printout survives.
LINK_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
LINK_CODE_SYMBOLS = 25  # 125 bits of entropy (the contract asks for at least 100)
RESOURCE = "AppLink"
_FIELDS = "id, app_id, client_id, created_at, expires_at, redeemed_at, revoked_at"


class AppLinkIn(StrictBody):
    app_id: Annotated[ShortText, Field(max_length=100, description="The client_id of a public app of this "
                                                                     "organization")]


class AppLinkOut(Out):
    id: UUID
    app_id: str
    client_id: UUID
    created_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None
    revoked_at: datetime | None


class AppLinkCreated(AppLinkOut):
    link_code: str = Field(description="Shown this once: hand it to the client (text or QR code). Single-use, "
                                       "bound to this app and client; only its hash is stored")


class AppLinkPage(Out):
    data: list[AppLinkOut]


def new_link_code() -> str:
    symbols = "".join(secrets.choice(LINK_ALPHABET) for _ in range(LINK_CODE_SYMBOLS))
    return "-".join(symbols[i:i + 5] for i in range(0, LINK_CODE_SYMBOLS, 5))


def normalized(link_code: str) -> str:
    """The code as stored (hashed): case, spaces and dashes are the reader's, not part of the code."""
    return "".join(link_code.split()).replace("-", "").upper()


def link_code_hash(link_code: str) -> str:
    return hash_secret(normalized(link_code))


def clinician_only(who: Principal, perm: str) -> None:
    """App links are made by the practice, never by a patient's own token (CONTRACT.md section 2)."""
    if who.patient_id is not None:
        raise Forbidden(required_scope("Client", perm, "system"))


async def _live_client(conn: AsyncConnection, who: Principal, client_id: UUID) -> None:
    await service.fetch(conn, who, owner(), client_id)  # 404 (also another organization's), 410


async def create(conn: AsyncConnection, who: Principal, client_id: UUID, app_id: str, ttl_hours: int) -> dict[str, Any]:
    clinician_only(who, "u")
    await _live_client(conn, who, client_id)
    app = (await conn.execute(text("SELECT public, disabled_at FROM apps WHERE org_id = :org AND client_id = :app"),
                              {"org": who.org_id, "app": app_id})).first()
    if app is None or not app.public or app.disabled_at is not None:
        raise RuleViolation("app_id", "app_id must be the client_id of a public app of this organization "
                            "(apps create --public)", "not_a_public_app")
    code = new_link_code()
    row = (await conn.execute(
        text(f"INSERT INTO app_links (org_id, id, client_id, app_id, code_hash, created_by, expires_at) "  # noqa: S608
             f"VALUES (:org, :id, :client, :app, :hash, :by, now() + make_interval(hours => :ttl)) "
             f"RETURNING {_FIELDS}"),
        {"org": who.org_id, "id": uuid7(), "client": client_id, "app": app_id, "hash": link_code_hash(code),
         "by": who.who, "ttl": ttl_hours},
    )).one()
    audit.wrote_many(RESOURCE, [row.id], [client_id], "created")
    return {**row._mapping, "link_code": code}


async def list_for(conn: AsyncConnection, who: Principal, client_id: UUID) -> list[dict[str, Any]]:
    clinician_only(who, "r")
    await _live_client(conn, who, client_id)
    rows = (await conn.execute(
        text(f"SELECT {_FIELDS} FROM app_links WHERE org_id = :org AND client_id = :client "  # noqa: S608
             "ORDER BY created_at DESC, id DESC LIMIT 500"),
        {"org": who.org_id, "client": client_id},
    )).all()
    audit.seen_many(RESOURCE, [r.id for r in rows], [client_id])
    return [dict(r._mapping) for r in rows]


async def revoke(conn: AsyncConnection, who: Principal, client_id: UUID, link_id: UUID) -> None:
    """Revoke the link (idempotent): its code can no longer be redeemed, and every access and refresh token
    issued through it is refused from this commit on, on every path and every instance."""
    clinician_only(who, "u")
    await _live_client(conn, who, client_id)
    revoking()
    row = (await conn.execute(
        text("UPDATE app_links SET revoked_at = coalesce(revoked_at, now()) "
             "WHERE org_id = :org AND client_id = :client AND id = :id RETURNING id"),
        {"org": who.org_id, "client": client_id, "id": link_id},
    )).first()
    if row is None:
        raise NotFound(f"No app link {link_id} for client {client_id}")
    audit.wrote_many(RESOURCE, [link_id], [client_id], "deleted")


_REDEEM = text("""
UPDATE app_links l SET redeemed_at = now()
 WHERE l.code_hash = :hash AND l.app_id = :app AND l.redeemed_at IS NULL AND l.revoked_at IS NULL
   AND l.expires_at > now()
   AND EXISTS (SELECT 1 FROM clients c WHERE c.org_id = l.org_id AND c.id = l.client_id AND c.deleted_at IS NULL)
RETURNING l.id""")
_SWEEP = text("DELETE FROM authorization_codes WHERE org_id = :org AND expires_at < now() - interval '1 day'")


async def redeem(conn: AsyncConnection, org_id: UUID, link_hash: str, app_id: str, *, redirect_uri: str,
                 challenge: str, scope: str, ttl_seconds: int) -> str | None:
    """Redeem a link code, once (for its app, unexpired, unrevoked, its client not deleted), for a new authorization
    code bound to the link, the redirect URI and the PKCE challenge; None when the link code does not hold."""
    link_id = (await conn.execute(_REDEEM, {"hash": link_hash, "app": app_id})).scalar()
    if link_id is None:
        return None
    code = secrets.token_urlsafe(32)
    await conn.execute(
        text("INSERT INTO authorization_codes (org_id, code_hash, link_id, redirect_uri, code_challenge, "
             "scope, expires_at) VALUES (:org, :h, :link, :uri, :challenge, :scope, "
             "now() + make_interval(secs => :ttl))"),
        {"org": org_id, "h": hash_secret(code), "link": link_id, "uri": redirect_uri,
         "challenge": challenge, "scope": scope, "ttl": ttl_seconds},
    )
    if random.random() < 0.01:  # noqa: S311 - sweeping long-expired codes now and then, not security
        await conn.execute(_SWEEP, {"org": org_id})
    return code
