"""Helpers for the patient-app tests: a public app, a clinician's app link, PKCE, the authorization code
flow driven with plain HTTP (the Authlib end-to-end test drives it with Authlib's client instead)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from service.auth.apps import create_app_record
from service.db import make_engine
from tests.support.factories import create
from tests.support.harness import Api, AuthedClient, Org

REDIRECT = "https://mood.example/callback"
APP_SCOPES = "patient/Client.rs patient/Measurement.crs patient/OutcomeMarker.rs patient/Strength.rs offline_access"
STAFF_SCOPES = "system/Client.cruds system/Strength.cruds system/OutcomeMarker.cruds system/Measurement.cruds"


async def public_app(api: Api, org: Org, scopes: str = APP_SCOPES,
                     redirect_uris: list[str] | None = None) -> dict[str, Any]:
    engine = make_engine(api.db.owner_url, api.db.settings(), pool=False)
    try:
        async with engine.begin() as conn:
            return await create_app_record(conn, org_id=org.id, name="Mood diary", scopes=scopes, public=True,
                                           redirect_uris=redirect_uris or [REDIRECT])
    finally:
        await engine.dispose()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


async def new_link(staff: AuthedClient, client_id: str, app_id: str, **headers: str) -> dict[str, Any]:
    resp = await staff.post(f"/v1/clients/{client_id}/app-links", json={"app_id": app_id}, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def authorize(http: httpx.AsyncClient, app: dict[str, Any], link_code: str | None, challenge: str, *,
                    state: str = "st-1", **params: str | None) -> httpx.Response:
    query = {"response_type": "code", "client_id": app["client_id"], "redirect_uri": REDIRECT, "state": state,
             "code_challenge": challenge, "code_challenge_method": "S256", "link_code": link_code, **params}
    return await http.get("/oauth/authorize", params={k: v for k, v in query.items() if v is not None})


def redirected(resp: httpx.Response) -> dict[str, str]:
    """The query the authorization endpoint redirected with (after checking it went to the app)."""
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def exchange(http: httpx.AsyncClient, app: dict[str, Any], code: str, verifier: str | None,
                   **extra: str | None) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": app["client_id"],
            "code_verifier": verifier, **extra}
    return await http.post("/oauth/token", data={k: v for k, v in form.items() if v is not None})


async def refresh(http: httpx.AsyncClient, app: dict[str, Any], token: str, **extra: str) -> httpx.Response:
    return await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                 "client_id": app["client_id"], **extra})


async def world(api: Api, **app_kw: Any) -> tuple[Org, AuthedClient, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(organization, a clinician's client, a client, a public app, a link of the two) before any redemption."""
    org = await api.org()
    staff = api.client(await api.token(org, STAFF_SCOPES))
    client = await create(staff, "clients")
    app = await public_app(api, org, **app_kw)
    link = await new_link(staff, client["id"], app["client_id"])
    return org, staff, client, app, link


@dataclass
class Linked:
    org: Org
    staff: AuthedClient
    client: dict[str, Any]
    app: dict[str, Any]
    link: dict[str, Any]
    tokens: dict[str, Any]


async def linked(api: Api, *, scopes: str = APP_SCOPES, org: Org | None = None, **authorize_params: str) -> Linked:
    """A client linked to a public app, and the app's first token response."""
    org = org or await api.org()
    staff = api.client(await api.token(org, STAFF_SCOPES))
    client = await create(staff, "clients")
    app = await public_app(api, org, scopes)
    link = await new_link(staff, client["id"], app["client_id"])
    verifier, challenge = pkce()
    code = redirected(await authorize(api.http, app, link["link_code"], challenge, **authorize_params))["code"]
    resp = await exchange(api.http, app, code, verifier)
    assert resp.status_code == 200, resp.text
    return Linked(org, staff, client, app, link, resp.json())


async def backdate_rotation(api: Api, seconds: int = 10) -> None:
    """Move every refresh-token rotation back in time (the owner role; the service has no such statement):
    past the retry grace without sleeping through it."""
    conn = await api.db.connect()
    try:
        await conn.execute("UPDATE refresh_tokens SET rotated_at = rotated_at - make_interval(secs => $1) "
                           "WHERE rotated_at IS NOT NULL", seconds)
    finally:
        await conn.close()
