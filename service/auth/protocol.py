"""What every OAuth endpoint shares: the RFC 6749 error reply, and the abuse limit on failed
authentications (CONTRACT.md section 2) that wraps each of them."""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import unquote

from fastapi import Request

from service.api.http import JSONOut
from service.api.ratelimit import address_key
from service.db import driver_connection

TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
T = TypeVar("T")


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error. ``failed_attempt``: the request presented a credential that did not
    hold (a secret, an assertion, a link code, an authorization code, a refresh token or its verifier), so
    it counts against the caller's address."""

    def __init__(self, error: str, description: str, status: int = 400, headers: dict[str, str] | None = None,
                 *, failed_attempt: bool = False):
        super().__init__(description)
        self.error, self.description, self.status, self.headers = error, description, status, headers or {}
        self.failed_attempt = failed_attempt

    def response(self) -> JSONOut:
        return JSONOut({"error": self.error, "error_description": self.description}, status_code=self.status,
                       headers={**TOKEN_HEADERS, **self.headers})


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401, {"WWW-Authenticate": 'Basic realm="token"'},
                      failed_attempt=True)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description, failed_attempt=True)


def basic_credentials(header: str, form: dict[str, str]) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise invalid_client("Use HTTP Basic, form credentials or a client assertion")
    if "client_secret" in form or "client_assertion" in form:
        raise OAuthError("invalid_request", "Send the client credentials one way only")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
        cid, sep, secret = decoded.partition(":")
        if not sep:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_client("Malformed Basic credentials") from exc
    return unquote(cid), unquote(secret)


def presented_client_id(request: Request, form: dict[str, str]) -> str | None:
    """The client id the caller names (form, Basic header), unchecked: the key of its per-client bucket."""
    client_id = form.get("client_id")
    header = request.headers.get("authorization")
    if header and not client_id:
        with contextlib.suppress(OAuthError):
            client_id = basic_credentials(header, {})[0]
    return client_id


async def find_app(request: Request, client_id: str) -> Any:
    """The enabled app with this client_id, or None (``auth_app()``: the one row, before the tenant is known).

    One statement in one round trip, on the pool's connection with no transaction around it
    (``driver_connection``): it reads one row and writes nothing, so SQLAlchemy's ``BEGIN`` and ``ROLLBACK`` around
    it bought nothing. The row's columns are the app's attributes, as the callers read them."""
    async with driver_connection(request.app.state.ctx.engine) as (_, raw):
        row = await raw.fetchrow("SELECT * FROM auth_app($1)", client_id)
    if row is None or row["disabled_at"] is not None:
        return None
    return SimpleNamespace(**dict(row.items()))


def source_address(request: Request) -> str:
    """The ASGI client address: the peer, or what a trusted proxy says it is (uvicorn's proxy headers and
    FORWARDED_ALLOW_IPS decide which)."""
    return address_key(request.client.host if request.client else None)


async def guarded(request: Request, client_id: str | None, work: Callable[[], Awaitable[T]]) -> T:
    """Run one OAuth request under the abuse limit: refused (429) at once while this address has failed too
    often (overall, or with this client id); a failed credential spends from its buckets; a request that
    authenticates spends nothing, so failures elsewhere never refuse it."""
    attempts = request.app.state.ctx.failed_attempts
    if attempts is None:
        return await work()
    async with attempts.attempt(source_address(request), client_id) as attempt:
        try:
            return await work()
        except OAuthError as err:
            if err.failed_attempt:
                attempt.failed()
            raise
