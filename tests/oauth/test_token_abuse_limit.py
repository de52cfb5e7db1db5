"""The token endpoints' abuse limit (CONTRACT.md section 2): failed authentications are counted per source address
(and per client id only among that address's attempts); a client presenting valid credentials is never refused
because others failed with its id. Tested from two addresses: the ASGI transport's client tuple, and real sockets
bound to 127.0.0.1 and 127.0.0.2 against a live uvicorn (whose proxy-header handling decides the address)."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.support.harness import Api
from tests.support.oauth import live_server
from tests.support.patient_apps import authorize, new_link, pkce, redirected, world

ATTACKER = ("127.0.0.2", 40000)
FORM = {"grant_type": "client_credentials"}


def from_address(api: Api, client: tuple[str, int]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app, client=client), base_url="http://testserver")


async def test_620_concurrent_wrong_secrets_do_not_lock_the_real_app_out(api):
    """The finding of issue 23, replayed: anyone who knows an app's client_id (not a secret) hammers the token
    endpoint with wrong secrets; the real app, elsewhere, still gets its token."""
    org = await api.org()
    creds = await api.register_app(org, "system/Client.rs")
    async with from_address(api, ATTACKER) as attacker:
        wrong = await asyncio.gather(*(attacker.post("/oauth/token", data=FORM, auth=(creds["client_id"], f"x{i}"))
                                       for i in range(620)))
        assert {r.status_code for r in wrong} == {401, 429}
        # At most TOKEN_FAILURE_LIMIT (100) of the burst were checked at all; the rest were refused unseen.
        assert sum(r.status_code == 401 for r in wrong) <= 100
        real = await api.http.post("/oauth/token", data=FORM, auth=(creds["client_id"], creds["client_secret"]))
        assert real.status_code == 200, real.text
        # The attacker's own address stays refused, even with the right secret: its failures, its bucket.
        own = await attacker.post("/oauth/token", data=FORM, auth=(creds["client_id"], creds["client_secret"]))
        assert own.status_code == 429
        assert own.headers["content-type"] == "application/problem+json"
        t = int(re.fullmatch(r'"oauthfailures";r=0;t=(\d+)', own.headers["ratelimit"]).group(1))
        assert int(own.headers["retry-after"]) >= t >= 1


async def test_per_address_and_per_client_within_an_address(db):
    async with Api.start(db, token_failure_limit=5, token_failure_limit_per_client=2) as api:
        org = await api.org()
        one, two, three = [await api.register_app(org, "system/Client.rs") for _ in range(3)]
        async with from_address(api, ATTACKER) as attacker:
            statuses = [(await attacker.post("/oauth/token", data=FORM, auth=(one["client_id"], "bad"))).status_code
                        for _ in range(3)]
            assert statuses == [401, 401, 429]  # two failures with this id from this address
            ok = await attacker.post("/oauth/token", data=FORM, auth=(two["client_id"], two["client_secret"]))
            assert ok.status_code == 200  # another id from the same address still works
            statuses = [(await attacker.post("/oauth/token", data=FORM, auth=(cid, "bad"))).status_code
                        for cid in (two["client_id"], two["client_id"], three["client_id"], three["client_id"])]
            assert statuses == [401, 401, 401, 429]  # five failures from this address in all: the address is out
            blocked = await attacker.post("/oauth/token", data=FORM, auth=(three["client_id"], three["client_secret"]))
            assert blocked.status_code == 429
            assert blocked.headers["ratelimit-policy"] == '"oauthfailures";q=5;w=60'
            # Introspection and revocation share the limit.
            assert (await attacker.post("/oauth/introspect", data={"token": "x"},
                                        auth=(one["client_id"], one["client_secret"]))).status_code == 429
        for creds in (one, two, three):  # the same apps, from another address
            fine = await api.http.post("/oauth/token", data=FORM, auth=(creds["client_id"], creds["client_secret"]))
            assert fine.status_code == 200, fine.text


async def test_concurrent_valid_requests_of_one_app_from_one_address_are_not_refused(db):
    """A mood app's backend refreshing many patients' tokens at once from one address (one client_id)."""
    async with Api.start(db, token_failure_limit_per_client=3) as api:
        org = await api.org()
        creds = await api.register_app(org, "system/Client.rs")
        oks = await asyncio.gather(*(api.http.post("/oauth/token", data=FORM,
                                                   auth=(creds["client_id"], creds["client_secret"]))
                                     for _ in range(30)))
        assert {r.status_code for r in oks} == {200}


async def test_valid_credentials_spend_nothing_and_only_they_spend_the_apps_quota(db):
    async with Api.start(db, token_failure_limit=2, token_rate_limit_requests=3) as api:
        org = await api.org()
        creds = await api.register_app(org, "system/Client.rs")
        async with from_address(api, ATTACKER) as attacker:
            for _ in range(2):
                assert (await attacker.post("/oauth/token", data=FORM,
                                            auth=(creds["client_id"], "bad"))).status_code == 401
        for _ in range(3):  # the app's own quota, untouched by the failures
            assert (await api.http.post("/oauth/token", data=FORM,
                                        auth=(creds["client_id"], creds["client_secret"]))).status_code == 200
        limited = await api.http.post("/oauth/token", data=FORM, auth=(creds["client_id"], creds["client_secret"]))
        assert limited.status_code == 429
        assert limited.headers["ratelimit-policy"] == '"oauthclient";q=3;w=60'


async def test_failed_link_codes_count_against_the_address(db):
    async with Api.start(db, token_failure_limit=3) as api:
        _org, staff, client, app, _link = await world(api)
        _, challenge = pkce()
        async with from_address(api, ATTACKER) as attacker:
            for guess in ("AAAAA-AAAAA", "BBBBB-BBBBB", "CCCCC-CCCCC"):
                assert redirected(await authorize(attacker, app, guess, challenge))["error"] == "access_denied"
            link = await new_link(staff, client["id"], app["client_id"])
            refused = await authorize(attacker, app, link["link_code"], challenge)
            assert refused.status_code == 429
            assert "location" not in refused.headers
            bad_codes = await attacker.post("/oauth/token", data={
                "grant_type": "authorization_code", "code": "x", "redirect_uri": "https://mood.example/callback",
                "client_id": app["client_id"], "code_verifier": pkce()[0]})
            assert bad_codes.status_code == 429  # one budget for link codes, codes, refresh tokens and secrets
        # The client, at home, redeems the link.
        assert redirected(await authorize(api.http, app, link["link_code"], challenge))["code"]


async def test_two_loopback_addresses_against_a_live_server(db):
    """Real sockets: the attacker's connections come from 127.0.0.2, the app's from 127.0.0.1. uvicorn believes
    X-Forwarded-For only from FORWARDED_ALLOW_IPS (127.0.0.1 by default): the attacker cannot pose as another
    address, and a trusted proxy's forwarded addresses are counted apart."""
    async with Api.start(db) as api:
        org = await api.org()
        creds = await api.register_app(org, "system/Client.rs")
    with live_server(db, token_failure_limit=4, token_failure_limit_per_client=3) as base:
        def client(address: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), base_url=base)

        token = f"{base}/oauth/token"
        good, bad = (creds["client_id"], creds["client_secret"]), (creds["client_id"], "bad")
        async with client("127.0.0.2") as attacker, client("127.0.0.1") as app, client("127.0.0.1") as proxy:
            statuses = [(await attacker.post(token, data=FORM, auth=bad)).status_code for _ in range(5)]
            assert statuses == [401, 401, 401, 429, 429]
            spoofed = await attacker.post(token, data=FORM, auth=good, headers={"X-Forwarded-For": "127.0.0.9"})
            assert spoofed.status_code == 429  # the header of an untrusted peer is ignored
            assert (await app.post(token, data=FORM, auth=good)).status_code == 200

            behind = {"X-Forwarded-For": "127.0.0.7"}
            statuses = [(await proxy.post(token, data=FORM, auth=bad, headers=behind)).status_code for _ in range(4)]
            assert statuses == [401, 401, 401, 429]  # counted for 127.0.0.7, as the trusted proxy says
            other = await proxy.post(token, data=FORM, auth=good, headers={"X-Forwarded-For": "127.0.0.8"})
            assert other.status_code == 200
            assert (await proxy.post(token, data=FORM, auth=good)).status_code == 200  # the proxy itself
