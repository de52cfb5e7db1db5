"""Signed JWT access tokens (joserfc): issuing, verifying, and the signing keys kept in the database."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from typing import Any
from uuid import UUID

import orjson
import structlog
from cryptography.fernet import InvalidToken, MultiFernet
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, Key, KeySet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.assertions import AssertionError_, unverified_parts
from service.auth.external import ExternalIssuers
from service.auth.principal import Principal
from service.auth.scopes import ScopeError, parse_scopes
from service.db import Token, tenant_transaction
from service.errors import Unauthenticated
from service.settings import Settings

log = structlog.get_logger("service.auth.tokens")

ALGORITHMS = ["ES256"]
CACHE_SECONDS = 5  # a verified token is reused for at most this long; revocation is checked on every call
CACHE_SIZE = 20_000
KEY_RELOAD_SECONDS = 60.0  # the token endpoint reloads the keys at most this often (picks up `keys rotate`)


def new_signing_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": secrets.token_urlsafe(12), "use": "sig", "alg": "ES256"})


async def ensure_signing_key(engine: AsyncEngine, cipher: MultiFernet) -> None:
    """Create the first signing key if none exists (idempotent under concurrent start-ups)."""
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(7226001)"))
        found = (await conn.execute(text("SELECT 1 FROM signing_keys WHERE active LIMIT 1"))).first()
        if not found:
            await insert_key(conn, cipher)


async def insert_key(conn: Any, cipher: MultiFernet) -> str:
    """A new active key, its private JWK encrypted with SIGNING_KEY_ENCRYPTION_KEY (never stored in the clear)."""
    key = new_signing_key()
    sealed = cipher.encrypt(orjson.dumps(key.as_dict(private=True))).decode()
    await conn.execute(
        text("INSERT INTO signing_keys (kid, alg, encrypted_jwk) VALUES (:kid, 'ES256', :sealed)"),
        {"kid": key.kid, "sealed": sealed},
    )
    return str(key.kid)


async def reencrypt_keys(conn: Any, cipher: MultiFernet) -> dict[str, Any]:
    """Re-encrypt every signing key with the newest SIGNING_KEY_ENCRYPTION_KEY (after adding one in front)."""
    rows = (await conn.execute(
        text("SELECT kid, encrypted_jwk FROM signing_keys ORDER BY created_at FOR UPDATE"))).all()
    done, unreadable = [], []
    for row in rows:
        try:
            sealed = cipher.rotate(row.encrypted_jwk.encode()).decode()
        except InvalidToken:
            unreadable.append(row.kid)
            continue
        await conn.execute(text("UPDATE signing_keys SET encrypted_jwk = :s WHERE kid = :kid"),
                           {"s": sealed, "kid": row.kid})
        done.append(row.kid)
    return {"reencrypted": done, "undecryptable": unreadable}


def open_key(cipher: MultiFernet, kid: str, sealed: str) -> ECKey | None:
    """The key a row holds, or None when the configured keys cannot decrypt it (or it names another kid)."""
    try:
        key = ECKey.import_key(orjson.loads(cipher.decrypt(sealed.encode())))
    except (InvalidToken, JoseError, ValueError) as exc:
        log.error("signing_key_undecryptable", kid=kid, error=type(exc).__name__)
        return None
    if key.kid != kid:
        log.error("signing_key_kid_mismatch", kid=kid)
        return None
    return key


class KeyStore:
    """The signing key in use and every key that may still verify a live token.

    Public keys are derived from the decrypted private keys: a row written with SQL alone (without
    SIGNING_KEY_ENCRYPTION_KEY) cannot add a key that verifies, let alone one that signs.
    """

    def __init__(self, engine: AsyncEngine, settings: Settings, cipher: MultiFernet) -> None:
        self.engine = engine
        self.settings = settings
        self.cipher = cipher
        self.current: ECKey | None = None
        self.keyset = KeySet([])
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        horizon = self.settings.token_ttl_seconds + 60
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT kid, encrypted_jwk, active FROM signing_keys "
                        "WHERE active OR retired_at > now() - make_interval(secs => :h) "
                        "ORDER BY active DESC, created_at DESC"
                    ),
                    {"h": horizon},
                )
            ).all()
        opened = [(open_key(self.cipher, r.kid, r.encrypted_jwk), r.active) for r in rows]
        keys: list[Key] = [k for k, _ in opened if k is not None]
        current = next((k for k, active in opened if active and k is not None), None)
        if current is None and self.current is not None:
            log.error("active_signing_key_unreadable_keeping_previous")
            return
        self.keyset = KeySet(keys)
        self.current = current
        self._loaded_at = time.monotonic()

    def require_current(self) -> None:
        if self.current is None:
            raise RuntimeError(
                "SIGNING_KEY_ENCRYPTION_KEY does not decrypt the active token signing key: configure the key it "
                "was encrypted with, or run `strengths-api keys rotate` to start a new one (docs/signing-keys.md)")

    async def refresh_if_stale(self, min_interval: float = 5.0) -> bool:
        if time.monotonic() - self._loaded_at < min_interval:
            return False  # the common case (every token request asks): no lock to take
        async with self._lock:
            if time.monotonic() - self._loaded_at < min_interval:
                return False
            await self.load()
            return True

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self.keyset.keys]}


REVOKED_SQL = text("SELECT token_revoked(:jti, :app, :grant)")


class TokenService:
    def __init__(self, keys: KeyStore, settings: Settings) -> None:
        self.keys = keys
        self.settings = settings
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self.external = ExternalIssuers(settings.external_issuers, allow_private=settings.jwks_allow_private_targets)

    def issue(self, *, org_id: UUID, client_id: str, scope: str, patient_id: UUID | None,
              grant_id: UUID | None = None) -> tuple[str, int]:
        """A signed access token; ``grant_id`` names the app-link grant it was issued through (revocable)."""
        key = self.keys.current
        if key is None:
            raise RuntimeError("no signing key loaded")
        now = int(time.time())
        ttl = self.settings.token_ttl_seconds
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": client_id,
            "aud": self.settings.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id,
            "org_id": str(org_id),
            "scope": scope,
        }
        if patient_id:
            claims["patient"] = str(patient_id)
        if grant_id:
            claims["grant_id"] = str(grant_id)
        token = jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}, claims, key)
        return token, ttl

    async def verify(self, token: str, *, check_revocation: bool = True) -> Principal:
        """The principal of a valid, unrevoked token, or Unauthenticated.

        Signature and claims checks are cached for a few seconds per token; revocation is not: every
        call asks the database (one primary-key lookup through ``token_revoked()``), so a token revoked
        on any instance is refused at once on all of them. A caller that runs the check itself, folded
        into its transaction's first statement (``set_tenant(..., token)``), passes
        ``check_revocation=False`` and saves the round trip.
        """
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            principal = await self._verify_any(token)
            self._cache[token] = (min(now + CACHE_SECONDS, principal.expires_at), principal)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        key = self.revocation_key(principal)
        if check_revocation and key and await self.is_revoked(*key):
            self._cache.pop(token, None)
            raise Unauthenticated("The token has been revoked (or its app disabled)")
        return principal

    def revocation_key(self, who: Principal) -> Token | None:
        """(jti, client_id, grant_id) under which revocation of the token, of its app, or of the app-link grant
        it came through (the grant or its link) is recorded (our tokens only)."""
        if who.issuer != self.settings.issuer:
            return None
        return who.token_id or "", who.app_id, who.grant_id or ""

    async def revoke(self, who: Principal) -> None:
        """Revoke one of our access tokens (RFC 7009): refused from this commit on, by every instance."""
        if not who.token_id or who.issuer != self.settings.issuer:
            return
        async with tenant_transaction(self.keys.engine, who.org_id) as conn:
            await conn.execute(text("DELETE FROM revoked_tokens WHERE expires_at < now() - interval '1 hour'"))
            await conn.execute(
                text("INSERT INTO revoked_tokens (jti, org_id, client_id, expires_at) "
                     "VALUES (:jti, :org, :cid, to_timestamp(:exp)) ON CONFLICT (jti) DO NOTHING"),
                {"jti": who.token_id, "org": who.org_id, "cid": who.app_id, "exp": who.expires_at},
            )

    async def is_revoked(self, jti: str, client_id: str, grant_id: str) -> bool:
        async with self.keys.engine.connect() as conn:
            return bool((await conn.execute(REVOKED_SQL, {"jti": jti, "app": client_id, "grant": grant_id})).scalar())

    async def _verify_any(self, token: str) -> Principal:
        try:
            _, claims = unverified_parts(token)
        except AssertionError_ as exc:
            raise Unauthenticated("The token is not a JWT") from exc
        issuer = claims.get("iss")
        if issuer != self.settings.issuer and isinstance(issuer, str) and issuer in self.external:
            return await self.external.verify(token, issuer)
        return await self._verify(token)

    async def _verify(self, token: str) -> Principal:
        try:
            decoded = self._decode(token)
        except _UnknownKey:
            await self.keys.refresh_if_stale()
            try:
                decoded = self._decode(token)
            except _UnknownKey as exc:
                raise Unauthenticated("The token is signed by an unknown key") from exc
        claims = decoded
        try:
            registry = jwt.JWTClaimsRegistry(
                leeway=5,
                iss={"essential": True, "value": self.settings.issuer},
                aud={"essential": True, "value": self.settings.audience},
                exp={"essential": True},
                org_id={"essential": True},
                client_id={"essential": True},
            )
            registry.validate(claims)
            scopes = parse_scopes(claims.get("scope"))
            org_id = UUID(str(claims["org_id"]))
            patient = UUID(str(claims["patient"])) if claims.get("patient") else None
            grant_id = str(UUID(str(claims["grant_id"]))) if claims.get("grant_id") else None
        except (JoseError, ScopeError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"The token is not valid: {exc}") from exc
        return Principal(
            org_id=org_id,
            app_id=str(claims["client_id"]),
            subject=str(claims.get("sub") or claims["client_id"]),
            scopes=scopes,
            patient_id=patient,
            token_id=claims.get("jti"),
            expires_at=int(claims["exp"]),
            issuer=str(claims["iss"]),
            grant_id=grant_id,
        )

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(token, self.keys.keyset, algorithms=ALGORITHMS)
        except InvalidKeyIdError as exc:
            raise _UnknownKey() from exc
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("The token is not valid or its signature does not verify") from exc
        return dict(decoded.claims)


class _UnknownKey(Exception):
    pass
