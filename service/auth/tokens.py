"""Signed JWT access tokens (joserfc): issuing, verifying, and the signing keys kept in the database."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from typing import Any
from uuid import UUID

import orjson
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth.assertions import AssertionError_, unverified_parts
from service.auth.external import ExternalIssuers
from service.auth.principal import Principal
from service.auth.scopes import ScopeError, parse_scopes
from service.errors import Unauthenticated
from service.settings import Settings

ALGORITHMS = ["ES256"]
CACHE_SECONDS = 5  # a verified token is reused for at most this long; revocation is checked on every call
CACHE_SIZE = 20_000


def new_signing_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": secrets.token_urlsafe(12), "use": "sig", "alg": "ES256"})


async def ensure_signing_key(engine: AsyncEngine) -> None:
    """Create the first signing key if none exists (idempotent under concurrent start-ups)."""
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(7226001)"))
        found = (await conn.execute(text("SELECT 1 FROM signing_keys WHERE active LIMIT 1"))).first()
        if not found:
            await insert_key(conn)


async def insert_key(conn: Any) -> str:
    key = new_signing_key()
    await conn.execute(
        text("INSERT INTO signing_keys (kid, alg, private_jwk) VALUES (:kid, 'ES256', CAST(:jwk AS jsonb))"),
        {"kid": key.kid, "jwk": orjson.dumps(key.as_dict(private=True)).decode()},
    )
    return str(key.kid)


class KeyStore:
    """The signing key in use and every key that may still verify a live token."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
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
                        "SELECT kid, private_jwk, active FROM signing_keys "
                        "WHERE active OR retired_at > now() - make_interval(secs => :h) "
                        "ORDER BY active DESC, created_at DESC"
                    ),
                    {"h": horizon},
                )
            ).all()
        keys = [ECKey.import_key(dict(r.private_jwk)) for r in rows]
        self.keyset = KeySet(keys)
        self.current = next((k for k, r in zip(keys, rows, strict=True) if r.active), None)
        self._loaded_at = time.monotonic()

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


REVOKED_SQL = text("SELECT token_revoked(:jti, :app)")


class TokenService:
    def __init__(self, keys: KeyStore, settings: Settings) -> None:
        self.keys = keys
        self.settings = settings
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self.external = ExternalIssuers(settings.external_issuers, allow_private=settings.jwks_allow_private_targets)

    def issue(self, *, org_id: UUID, client_id: str, scope: str, patient_id: UUID | None) -> tuple[str, int]:
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

    def revocation_key(self, who: Principal) -> tuple[str, str] | None:
        """(jti, client_id) under which revocation of the token or of its app is recorded (ours only)."""
        return (who.token_id or "", who.app_id) if who.issuer == self.settings.issuer else None

    async def is_revoked(self, jti: str, client_id: str) -> bool:
        async with self.keys.engine.connect() as conn:
            return bool((await conn.execute(REVOKED_SQL, {"jti": jti, "app": client_id})).scalar())

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
