"""private_key_jwt client authentication (RFC 7523 section 2.2, as SMART Backend Services profiles it).

The checks are the ones Authlib's ``JWTBearerClientAssertion`` makes (signature, ``iss`` = ``sub`` =
client_id, ``aud`` the token endpoint, ``exp``, ``jti``), done here with joserfc directly because
Authlib's server class is synchronous and framework-bound, plus what SMART adds: RS384 or ES384 only,
a ``kid`` that is in the app's JWKS, ``exp`` at most five minutes ahead, and a ``jti`` that can never
be used twice (its row's primary key in ``used_assertions`` is the check, so it holds across instances).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service import outbound
from service.db import tenant_transaction

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ["RS384", "ES384"]
MAX_LIFETIME = 300  # seconds: SMART's "exp at most 5 minutes in the future"
LEEWAY = 30
JWKS_TIMEOUT = 3.0
JWKS_TTL = 300.0
JWKS_MIN_REFETCH = 10.0
JWKS_MAX_BYTES = 256_000


class AssertionError_(Exception):  # noqa: N801 - not the builtin
    """The assertion does not authenticate the app (rendered as 401 invalid_client)."""


def unverified_parts(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, read before verification only to find the app and its key."""
    try:
        obj = jws.extract_compact(assertion.encode())
        claims = orjson.loads(obj.payload)
    except (JoseError, ValueError) as exc:
        raise AssertionError_("The client assertion is not a JWT") from exc
    if not isinstance(claims, dict):
        raise AssertionError_("The client assertion is not a JWT")
    return dict(obj.headers()), claims


def jwks_policy(allow_private: bool) -> outbound.Policy:
    """Where a JWKS may be fetched from (apps' URLs, external issuers'): the outbound guard, any port."""
    return outbound.Policy("JWKS", allow_private=allow_private)


async def check_jwks_url(url: str, allow_private: bool) -> None:
    """Raise ValueError unless ``url`` is an acceptable JWKS URL (at registration)."""
    try:
        await outbound.check_url(url, jwks_policy(allow_private))
    except outbound.TargetRefused as exc:
        raise ValueError(f"the JWKS URL is refused: {exc.message}") from None


class JwksCache:
    """Apps' registered JWKS: inline documents as stored, URLs fetched with a short timeout and cached, through
    the outbound guard (checked again at each fetch)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *, allow_private: bool = False) -> None:
        self._cache: dict[str, tuple[float, KeySet]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._allow_private = allow_private
        self._transport = transport

    async def keyset(self, app: Any, *, kid: str) -> KeySet:
        if app.jwks:
            return _import(app.jwks)
        if not app.jwks_url:
            raise AssertionError_("The app has no registered JWKS")
        url = str(app.jwks_url)
        now = time.monotonic()
        hit = self._cache.get(url)
        if hit and now - hit[0] < JWKS_TTL and _has_kid(hit[1], kid):
            return hit[1]
        if hit and now - hit[0] < JWKS_MIN_REFETCH:
            return hit[1]  # an unknown kid may not make us hammer the app's server
        async with self._locks.setdefault(url, asyncio.Lock()):
            fetched = await self._fetch(url)
            self._cache[url] = (time.monotonic(), fetched)
            return fetched

    async def _fetch(self, url: str) -> KeySet:
        return await fetch_jwks(url, self._allow_private, self._transport)


async def fetch_jwks(url: str, allow_private: bool, transport: httpx.AsyncBaseTransport | None = None) -> KeySet:
    """The key set at ``url``, through the outbound guard; AssertionError_ if it is refused or unreadable."""
    try:
        await check_jwks_url(url, allow_private)
    except ValueError as exc:
        raise AssertionError_(str(exc)) from None
    try:
        async with httpx.AsyncClient(timeout=JWKS_TIMEOUT, transport=transport or outbound.GuardedTransport(
                jwks_policy(allow_private)), follow_redirects=False) as http, \
                http.stream("GET", url, headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise AssertionError_(f"The JWKS URL answered {resp.status_code}")
            body = b""
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise AssertionError_("The JWKS document is too large")
        return _import(orjson.loads(body))
    except (httpx.HTTPError, ValueError) as exc:
        raise AssertionError_("The JWKS URL could not be read") from exc


def _import(document: Any) -> KeySet:
    try:
        return KeySet.import_key_set(document)
    except (JoseError, KeyError, TypeError, ValueError) as exc:
        raise AssertionError_("The app's JWKS is not a valid key set") from exc


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)


async def verify_assertion(
    engine: AsyncEngine, jwks: JwksCache, app: Any, assertion: str, *, token_endpoint: str
) -> None:
    """Authenticate ``app`` by its client assertion, or raise AssertionError_."""
    header, _ = unverified_parts(assertion)
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ASSERTION_ALGS:
        raise AssertionError_(f"The assertion must be signed with one of {', '.join(ASSERTION_ALGS)}")
    if not isinstance(kid, str) or not kid:
        raise AssertionError_("The assertion header must name its key (kid)")
    if header.get("jku") and header["jku"] != app.jwks_url:
        raise AssertionError_("The assertion's jku is not the app's registered JWKS URL")
    keys = await jwks.keyset(app, kid=kid)
    if not _has_kid(keys, kid):
        raise AssertionError_("The assertion is signed by a key not in the app's JWKS")
    try:
        claims = dict(jwt.decode(assertion, keys, algorithms=ASSERTION_ALGS).claims)
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": app.client_id},
            sub={"essential": True, "value": app.client_id},
            aud={"essential": True, "value": token_endpoint},
            exp={"essential": True},
            jti={"essential": True},
        ).validate(claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise AssertionError_(f"The client assertion is not valid: {exc}") from exc
    exp, jti = claims["exp"], claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise AssertionError_("The assertion needs a jti")
    if not isinstance(exp, int | float) or exp > time.time() + MAX_LIFETIME + LEEWAY:
        raise AssertionError_("The assertion's exp is more than 5 minutes ahead")
    await _spend_jti(engine, app, jti, float(exp))


async def _spend_jti(engine: AsyncEngine, app: Any, jti: str, exp: float) -> None:
    """Record the jti; the primary key (client_id, jti) refuses a second use, on any instance."""
    try:
        async with tenant_transaction(engine, app.org_id) as conn:
            await conn.execute(text("DELETE FROM used_assertions WHERE client_id = :cid AND expires_at < now()"),
                               {"cid": app.client_id})
            await conn.execute(
                text("INSERT INTO used_assertions (org_id, client_id, jti, expires_at) "
                     "VALUES (:org, :cid, :jti, :exp)"),
                {"org": app.org_id, "cid": app.client_id, "jti": jti,
                 "exp": datetime.fromtimestamp(exp + LEEWAY, UTC)},
            )
    except IntegrityError as exc:
        raise AssertionError_("The assertion's jti has been used before") from exc
