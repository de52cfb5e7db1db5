"""Idempotency-Key for POSTs (IETF httpapi draft, as Stripe practises it), held in PostgreSQL.

The first response is stored in the same transaction as the writes it reports, so a replay can never
disagree with the data. A transaction-scoped advisory lock on the key makes a concurrent duplicate
answer 409 at once instead of waiting; the same key with another body is 422; failed requests (4xx,
5xx) roll back and are not stored, so the client may retry them with the same key.

A reply that carries a secret shown once (an app link's ``link_code``) is stored ``sealed``: encrypted with
a key the database never sees (service.auth.keycrypt), and opened again only to replay it.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from cryptography.fernet import InvalidToken
from fastapi import Request, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.errors import Conflict, MalformedRequest, RuleViolation

KEY_HEADER = "Idempotency-Key"
MAX_KEY = 255
# 1 to 255 printable ASCII characters, the first and the last not a space: HTTP takes leading and trailing white
# space off a field value (RFC 9110 section 5.5), so a key that had any would not arrive as sent, and one of spaces
# only would arrive empty. Declared in OpenAPI as it is (``dependencies.IdempotencyKeyHeader``).
KEY_REGEX = r"[!-~](?:[ -~]{0,253}[!-~])?"
KEY_PATTERN = re.compile(KEY_REGEX)
TTL_HOURS = 24
REPLAYED_HEADERS = ("location", "etag", "content-type")

_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:lock, 7226))")
_FIND = text(
    "SELECT fingerprint, status_code, body, headers FROM idempotency_keys "
    "WHERE org_id = :org AND app_id = :app AND key = :key AND expires_at > now()"
)
_STORE = text(
    "INSERT INTO idempotency_keys (org_id, app_id, key, fingerprint, status_code, body, headers, client_ids, "
    "expires_at) VALUES (:org, :app, :key, :fp, :status, :body, CAST(:headers AS jsonb), CAST(:clients AS uuid[]), "
    "now() + make_interval(hours => :ttl)) "
    "ON CONFLICT (org_id, app_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, "
    "status_code = EXCLUDED.status_code, body = EXCLUDED.body, headers = EXCLUDED.headers, "
    "client_ids = EXCLUDED.client_ids, created_at = now(), expires_at = EXCLUDED.expires_at"
)
_SWEEP = text("DELETE FROM idempotency_keys WHERE org_id = :org AND expires_at < now() - interval '1 hour'")


class Sealer(Protocol):
    """Authenticated encryption of stored replies (a ``cryptography`` Fernet or MultiFernet)."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, token: bytes) -> bytes: ...


def _opened(sealed: Sealer, body: bytes) -> bytes:
    try:
        return sealed.decrypt(body)
    except InvalidToken as exc:  # sealed under an encryption key since removed (docs/signing-keys.md)
        raise Conflict(f"The reply stored for this {KEY_HEADER} can no longer be read (the encryption key was "
                       "rotated); send the request with a new key") from exc


def key_of(request: Request) -> str | None:
    key = request.headers.get(KEY_HEADER)
    if key is None:
        return None
    if not KEY_PATTERN.fullmatch(key):
        raise MalformedRequest(f"{KEY_HEADER} must be 1 to {MAX_KEY} printable ASCII characters, not beginning or "
                               "ending with a space")
    return key


async def idempotent(
    request: Request, conn: AsyncConnection, who: Principal, run: Callable[[], Awaitable[Response]],
    *, client_ids: Callable[[Response], list[Any]] | None = None, sealed: Sealer | None = None,
) -> Response:
    """Run ``run`` once per key; replay its stored response for the same key and body (kept encrypted with
    ``sealed`` when given)."""
    key = key_of(request)
    if key is None:
        return await run()
    body = await request.body()
    fingerprint = hashlib.sha256(request.method.encode() + b" " + request.url.path.encode() + b"\n" + body).hexdigest()
    scope = {"org": who.org_id, "app": who.app_id, "key": key}
    locked = (await conn.execute(_LOCK, {"lock": f"{who.org_id}|{who.app_id}|{key}"})).scalar()
    if not locked:
        raise Conflict("A request with this Idempotency-Key is still in flight; retry after it completes")
    found = (await conn.execute(_FIND, scope)).first()
    if found is not None:
        if found.fingerprint != fingerprint:
            raise RuleViolation("Idempotency-Key", "This key was used with another request body",
                                "idempotency_key_reused")
        headers = {**orjson.loads(orjson.dumps(found.headers)), "Idempotent-Replayed": "true"}
        content = _opened(sealed, bytes(found.body)) if sealed else bytes(found.body)
        return Response(content=content, status_code=found.status_code, headers=headers)
    response = await run()
    if 200 <= response.status_code < 300:
        stored = {k: v for k, v in response.headers.items() if k in REPLAYED_HEADERS}
        await conn.execute(_STORE, {
            **scope, "fp": fingerprint, "status": response.status_code,
            "body": sealed.encrypt(bytes(response.body)) if sealed else bytes(response.body),
            "headers": orjson.dumps(stored).decode(), "ttl": TTL_HOURS,
            "clients": [str(c) for c in (client_ids(response) if client_ids else [])],
        })
        if random.random() < 0.01:  # noqa: S311 - sweeping expired keys now and then, not security
            await conn.execute(_SWEEP, {"org": who.org_id})
    return response
